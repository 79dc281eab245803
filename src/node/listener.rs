//! Inbound gossip connections: a listener thread accepting connections and a reader
//! thread per connection, turning bytes into frames tagged with the sender's gossip
//! address for the event loop.
//!
//! Defences against hostile or broken senders: at most `max_inbound` connections are
//! served at once (more are closed at once and counted); the first frame must be a Hello
//! and must arrive within `hello_timeout`, so idle sockets do not pin threads; frame
//! lengths are checked against the payload limit before anything is allocated; and a
//! malformed frame closes its connection and is counted. The Hello's deadline covers the
//! whole opening (a keyed handshake included), not each read, so a peer sending a byte
//! at a time cannot hold a connection slot past it; and the first frame may be no longer
//! than a Hello can be. A connection silent for
//! `idle_timeout` is closed too (its peer reconnects when it next has something to say).
//!
//! With a keyring, a connection opens with the keyed handshake and every frame must
//! open under the session's key before it is decoded; a plaintext opening is refused
//! unless the mode accepts plaintext, and a `keys` frame is refused on a plaintext
//! connection. Each refusal is counted and logged through the shared keyring. A session
//! whose key was removed, or a plaintext connection once plaintext is refused, is closed
//! at its next frame.

use super::keyed_stream::{self, Deadlined, Opening, OpeningError, SealedReadError};
use crate::codec::{self, CodecError, Frame, ReadError, HEADER_LEN};
use crate::keyring::session::{Opener, SessionError};
use crate::keyring::shared::{Rejection, SharedKeyring};
use crate::member::NodeName;
use crate::status::InboundStats;
use crossbeam_channel::Sender;
use std::cell::Cell;
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const READER_STACK: usize = 256 * 1024;

/// One frame from a peer, tagged with the name and gossip address its Hello announced.
#[derive(Debug)]
pub struct Inbound {
    pub from: NodeName,
    pub from_addr: String,
    pub frame: Frame,
}

#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub max_inbound: usize,
    pub hello_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_payload: usize,
    /// The node's keyring, when it has one.
    pub keyring: Option<SharedKeyring>,
}

/// Counters shared by the listener and its readers.
#[derive(Debug, Default)]
pub struct InboundCounters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    malformed: AtomicU64,
    hello_timeouts: AtomicU64,
    open: AtomicUsize,
}

impl InboundCounters {
    /// A point-in-time copy, for the node's status.
    pub fn stats(&self) -> InboundStats {
        InboundStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            malformed_frames: self.malformed.load(Ordering::Relaxed),
            hello_timeouts: self.hello_timeouts.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
        }
    }
}

/// The running listener; [`GossipListener::stop`] closes it and every inbound connection.
pub struct GossipListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<HashMap<u64, TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl GossipListener {
    pub fn spawn(
        listener: TcpListener,
        config: ListenerConfig,
        frames: Sender<Inbound>,
        stats: Arc<InboundCounters>,
    ) -> std::io::Result<GossipListener> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(HashMap::new()));
        let acceptor = Acceptor {
            config,
            frames,
            stats,
            stop: stop.clone(),
            open: open.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("gossip-listen".into())
            .spawn(move || acceptor.run(listener))?;
        Ok(GossipListener {
            addr,
            stop,
            open,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept call so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for (_, s) in self.open.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

struct Acceptor {
    config: ListenerConfig,
    frames: Sender<Inbound>,
    stats: Arc<InboundCounters>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<HashMap<u64, TcpStream>>>,
}

impl Acceptor {
    fn run(self, listener: TcpListener) {
        let mut next_id = 0u64;
        for conn in listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("accept: {e}");
                    // Out of descriptors and the like: give the system a moment.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            if self.stats.open.load(Ordering::SeqCst) >= self.config.max_inbound {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            next_id += 1;
            self.start_reader(next_id, stream);
        }
    }

    fn start_reader(&self, id: u64, stream: TcpStream) {
        let Ok(registered) = stream.try_clone() else {
            return;
        };
        self.stats.open.fetch_add(1, Ordering::SeqCst);
        self.lock_open().insert(id, registered);
        let reader = Reader {
            config: self.config.clone(),
            frames: self.frames.clone(),
            stats: self.stats.clone(),
        };
        let open = self.open.clone();
        let stats = self.stats.clone();
        let spawned = std::thread::Builder::new()
            .name("gossip-in".into())
            .stack_size(READER_STACK)
            .spawn(move || {
                reader.run(stream);
                open.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                stats.open.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a reader thread: {e}");
            self.lock_open().remove(&id);
            self.stats.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Reader {
    config: ListenerConfig,
    frames: Sender<Inbound>,
    stats: Arc<InboundCounters>,
}

/// The name and gossip address a Hello announces.
fn sender(frame: &Frame) -> Option<(NodeName, String)> {
    match frame {
        Frame::Hello {
            name, gossip_addr, ..
        } => Some((name.clone(), gossip_addr.clone())),
        _ => None,
    }
}

/// Where a connection's frames come from, once it opened.
struct Source {
    keyring: Option<SharedKeyring>,
    /// `None` on a plaintext connection.
    opener: Option<Opener>,
    /// A plaintext connection's first header, read while telling it from a keyed hello.
    first_header: Option<[u8; HEADER_LEN]>,
    generation: u64,
    max_payload: usize,
}

/// Why a connection ends.
enum Failure {
    Read(ReadError),
    /// Counted and logged as a keyring rejection already.
    Rejected,
    /// The keyring changed so that this connection may not go on.
    Closed,
}

impl Source {
    /// The next frame, authenticated first on a keyed connection.
    fn next(&mut self, input: &mut impl std::io::Read, peer: &str) -> Result<Frame, Failure> {
        self.check_keyring()?;
        let Some(opener) = &mut self.opener else {
            let frame = match self.first_header.take() {
                Some(header) => keyed_stream::read_plain_after(header, input, self.max_payload),
                None => codec::read_frame(input, self.max_payload),
            }
            .map_err(Failure::Read)?;
            if keyed_stream::keyed_only(frame.frame_type()) {
                if let Some(k) = &self.keyring {
                    let why = "a keyring frame on a plaintext connection";
                    k.reject(Rejection::TcpKeysOnPlaintext, peer, why);
                }
                return Err(Failure::Rejected);
            }
            return Ok(frame);
        };
        match keyed_stream::read_sealed(input, self.max_payload, opener) {
            Ok(raw) => raw.decode().map_err(|e| Failure::Read(ReadError::Codec(e))),
            Err(SealedReadError::Read(e)) => Err(Failure::Read(e)),
            Err(SealedReadError::Open(e)) => {
                if let Some(k) = &self.keyring {
                    k.reject(
                        Rejection::TcpBadFrame,
                        peer,
                        &format!("{e} (forged, replayed or cut)"),
                    );
                }
                Err(Failure::Rejected)
            }
        }
    }

    fn check_keyring(&mut self) -> Result<(), Failure> {
        let Some(keyring) = &self.keyring else {
            return Ok(());
        };
        let generation = keyring.generation();
        if generation == self.generation {
            return Ok(());
        }
        self.generation = generation;
        let still_fine = match &self.opener {
            Some(opener) => keyring.still_holds(opener.key_id()),
            None => keyring.current().mode.accepts_plaintext(),
        };
        if still_fine {
            Ok(())
        } else {
            Err(Failure::Closed)
        }
    }
}

impl Reader {
    fn run(&self, stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        let deadline = Cell::new(Some(Instant::now() + self.config.hello_timeout));
        let mut input = BufReader::new(Deadlined {
            stream: &stream,
            deadline: &deadline,
        });
        let Some(mut source) = self.open(&stream, &mut input, &peer) else {
            return;
        };
        let hello = match source.next(&mut input, &peer) {
            Ok(frame) => frame,
            Err(e) => {
                self.count_failure(&peer, &e, true);
                return;
            }
        };
        let Some(from) = sender(&hello) else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "closing connection from {peer}: first frame is {:?}, not a hello",
                hello.frame_type()
            );
            return;
        };
        let hello = Inbound {
            from: from.0.clone(),
            from_addr: from.1.clone(),
            frame: hello,
        };
        deadline.set(None);
        source.max_payload = self.config.max_payload;
        if self.frames.send(hello).is_err()
            || stream
                .set_read_timeout(Some(self.config.idle_timeout))
                .is_err()
        {
            return;
        }
        loop {
            match source.next(&mut input, &peer) {
                Ok(frame) => {
                    let inbound = Inbound {
                        from: from.0.clone(),
                        from_addr: from.1.clone(),
                        frame,
                    };
                    if self.frames.send(inbound).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    self.count_failure(&peer, &e, false);
                    return;
                }
            }
        }
    }

    /// Reads how the connection opens and answers a keyed hello; `None` when the
    /// connection must close (counted).
    fn open(&self, stream: &TcpStream, input: &mut impl Read, peer: &str) -> Option<Source> {
        let keyring = self.config.keyring.clone();
        let mut source = Source {
            generation: keyring.as_ref().map_or(0, SharedKeyring::generation),
            keyring,
            opener: None,
            first_header: None,
            // The first frame must be a Hello; the limit grows once it is in.
            max_payload: codec::MAX_HELLO_PAYLOAD.min(self.config.max_payload),
        };
        let opening = match keyed_stream::read_opening(input) {
            Ok(o) => o,
            Err(OpeningError::Io(e)) => {
                self.count_failure(peer, &Failure::Read(ReadError::Io(e)), true);
                return None;
            }
            Err(OpeningError::Codec(e)) => {
                self.count_failure(peer, &Failure::Read(ReadError::Codec(e)), true);
                return None;
            }
            Err(OpeningError::Session(e)) => {
                self.refuse_hello(&source, peer, e);
                return None;
            }
        };
        let Some(keyring) = &source.keyring else {
            return match opening {
                Opening::Plain(header) => {
                    source.first_header = Some(header);
                    Some(source)
                }
                Opening::Keyed(_) => {
                    let bad = Failure::Read(ReadError::Codec(CodecError::BadMagic));
                    self.count_failure(peer, &bad, true);
                    None
                }
            };
        };
        let active = keyring.current();
        match opening {
            Opening::Plain(header) if active.mode.accepts_plaintext() => {
                source.first_header = Some(header);
                Some(source)
            }
            Opening::Plain(_) => {
                let why = "a plaintext connection; this node accepts keyed connections only";
                keyring.reject(Rejection::TcpPlaintext, peer, why);
                None
            }
            Opening::Keyed(hello) => {
                match keyed_stream::answer_hello(stream, &active.keyring, &hello) {
                    Ok(opener) => {
                        source.opener = Some(opener);
                        Some(source)
                    }
                    Err(e) => {
                        self.refuse_hello(&source, peer, e);
                        None
                    }
                }
            }
        }
    }

    fn refuse_hello(&self, source: &Source, peer: &str, e: SessionError) {
        match &source.keyring {
            Some(k) => {
                let what = match e {
                    SessionError::UnknownKey(_) => Rejection::TcpUnknownKey,
                    _ => Rejection::TcpBadHello,
                };
                k.reject(what, peer, &e.to_string());
            }
            None => {
                let bad = Failure::Read(ReadError::Codec(CodecError::BadMagic));
                self.count_failure(peer, &bad, true);
            }
        }
    }

    fn count_failure(&self, peer: &str, e: &Failure, waiting_for_hello: bool) {
        let e = match e {
            Failure::Read(e) => e,
            Failure::Rejected => return,
            Failure::Closed => {
                log::debug!("closing connection from {peer}: the keyring changed");
                return;
            }
        };
        match e {
            ReadError::Codec(c) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                log::debug!("closing connection from {peer}: malformed frame: {c}");
            }
            ReadError::Io(io)
                if waiting_for_hello
                    && matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                self.stats.hello_timeouts.fetch_add(1, Ordering::Relaxed);
                log::debug!("closing connection from {peer}: no hello in time");
            }
            ReadError::Io(io) => log::debug!("connection from {peer} closed: {io}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameType;
    use std::io::Write;

    fn listener(hello_timeout: Duration) -> (GossipListener, Arc<InboundCounters>) {
        let config = ListenerConfig {
            max_inbound: 4,
            hello_timeout,
            idle_timeout: Duration::from_secs(60),
            max_payload: 1 << 20,
            keyring: None,
        };
        let stats = Arc::new(InboundCounters::default());
        let (frames, _) = crossbeam_channel::unbounded();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        (
            GossipListener::spawn(tcp, config, frames, stats.clone()).unwrap(),
            stats,
        )
    }

    /// Sends `bytes` one at a time, `every` apart, until the listener closes the
    /// connection; returns how long that took (`None`: all sent and still open).
    fn trickle(addr: SocketAddr, bytes: &[u8], every: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(every)).unwrap();
        for b in bytes {
            if stream.write_all(&[*b]).is_err() {
                return Some(started.elapsed());
            }
            let mut buf = [0u8; 16];
            match stream.read(&mut buf) {
                Ok(0) => return Some(started.elapsed()),
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                    return Some(started.elapsed())
                }
                _ => {}
            }
        }
        None
    }

    #[test]
    fn a_peer_sending_its_opening_a_byte_at_a_time_is_cut_off_at_the_hello_deadline() {
        let (mut listener, stats) = listener(Duration::from_millis(600));
        // A plaintext header announcing a Hello of a size a Hello can have, then its
        // payload, a byte per 100 ms: each read is quick, the whole far too slow.
        let mut bytes = codec::MAGIC.to_vec();
        bytes.extend([codec::PROTOCOL_VERSION, FrameType::Hello as u8]);
        bytes.extend(300u32.to_be_bytes());
        bytes.extend([0u8; 64]);
        let took = trickle(listener.addr, &bytes, Duration::from_millis(100))
            .expect("closed before the payload is in");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(stats.stats().hello_timeouts, 1);
        listener.stop();
    }

    #[test]
    fn a_first_frame_longer_than_a_hello_can_be_closes_the_connection_unread() {
        let (mut listener, stats) = listener(Duration::from_secs(5));
        let mut stream = TcpStream::connect(listener.addr).unwrap();
        let mut header = codec::MAGIC.to_vec();
        header.extend([codec::PROTOCOL_VERSION, FrameType::Hello as u8]);
        header.extend(((codec::MAX_HELLO_PAYLOAD + 1) as u32).to_be_bytes());
        stream.write_all(&header).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)));
        assert_eq!(stats.stats().malformed_frames, 1);
        listener.stop();
    }
}

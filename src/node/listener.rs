//! Inbound gossip connections: a listener thread accepting connections and a reader
//! thread per connection, turning bytes into frames tagged with the sender's gossip
//! address for the event loop.
//!
//! Defences against hostile or broken senders: at most `max_inbound` connections are
//! served at once (more are closed at once and counted); the first frame must be a Hello
//! and must arrive within `hello_timeout`, so idle sockets do not pin threads; frame
//! lengths are checked against the payload limit before anything is allocated; and a
//! malformed frame closes its connection and is counted. A connection silent for
//! `idle_timeout` is closed too (its peer reconnects when it next has something to say).

use crate::codec::{self, Frame, ReadError};
use crate::member::NodeName;
use crate::status::InboundStats;
use crossbeam_channel::Sender;
use std::collections::HashMap;
use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

impl Reader {
    fn run(&self, stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        if stream
            .set_read_timeout(Some(self.config.hello_timeout))
            .is_err()
        {
            return;
        }
        let mut input = BufReader::new(&stream);
        let from = match codec::read_frame(&mut input, self.config.max_payload) {
            Ok(Frame::Hello {
                name,
                gossip_addr,
                http_addr,
            }) => {
                let from = (name.clone(), gossip_addr.clone());
                let hello = Frame::Hello {
                    name,
                    gossip_addr,
                    http_addr,
                };
                let inbound = Inbound {
                    from: from.0.clone(),
                    from_addr: from.1.clone(),
                    frame: hello,
                };
                if self.frames.send(inbound).is_err() {
                    return;
                }
                from
            }
            Ok(other) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                log::debug!(
                    "closing connection from {peer}: first frame is {:?}, not a hello",
                    other.frame_type()
                );
                return;
            }
            Err(e) => {
                self.count_failure(&peer, &e, true);
                return;
            }
        };
        if stream
            .set_read_timeout(Some(self.config.idle_timeout))
            .is_err()
        {
            return;
        }
        loop {
            match codec::read_frame(&mut input, self.config.max_payload) {
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

    fn count_failure(&self, peer: &str, e: &ReadError, waiting_for_hello: bool) {
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

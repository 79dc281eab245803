//! Outbound peer connections: one persistent TCP connection per peer, each with its own
//! writer thread and a bounded queue, so a slow, dead or black-holed peer only ever
//! stalls its own writer, never the event loop or the other peers. A link goes to a
//! gossip address: a member's, or one being joined through.
//!
//! The event loop queues frames with [`PeerLink::send`], which never blocks: when the
//! queue is full it drops the oldest frame (gossip carries absolute totals, so anti-entropy
//! repairs whatever a dropped frame carried). The writer connects with a timeout, sends
//! its Hello first, writes with a timeout, and after any failure reconnects with
//! exponential backoff; frames queued while the peer is unreachable are discarded.
//! Every connect and every failure is reported to the event loop, which logs transitions.
//!
//! With a keyring, a connection starts with the keyed handshake (`keyed_stream`) and
//! every frame is sealed; a peer that does not complete the handshake is reported as
//! such, so the event loop can drop a link to an address that is no member's. During the
//! transition (mode `open`) a peer that refuses the handshake gets plaintext instead,
//! never a `keys` frame. When the keyring changes so that the connection's key is gone,
//! or plaintext is no longer sent, the writer reconnects at once, keeping its queue.

use super::event_loop::Control;
use super::keyed_stream::{self, HandshakeError};
use crate::codec::{self, Frame};
use crate::keyring::session::Sealer;
use crate::keyring::shared::{Rejection, SharedKeyring};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How long written bytes may stay unacknowledged before the kernel drops the connection
/// (TCP_USER_TIMEOUT). Without it a partitioned peer's connection stays established while
/// TCP's retransmission backoff grows, and after the heal gossip waits for the next
/// retransmission: minutes after a long partition. With it the writer reconnects, and a
/// healed link carries gossip again within this timeout plus the reconnect backoff.
const UNACKED_TIMEOUT: Duration = Duration::from_secs(3);
/// Frames are coalesced into one write up to about this many bytes.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// What every writer needs to know.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    pub queue: usize,
    pub io_timeout: Duration,
    pub max_backoff: Duration,
    /// Sent first on every new connection.
    pub hello: Frame,
    /// The node's keyring, when it has one.
    pub keyring: Option<SharedKeyring>,
}

/// The event loop's handle on one peer's writer. Dropping it stops the writer.
pub struct PeerLink {
    tx: Sender<Frame>,
    /// A second receiver on the queue, used only to drop the oldest frame when it is full.
    oldest: Receiver<Frame>,
    /// Frames dropped because the queue was full.
    pub dropped: u64,
}

impl PeerLink {
    /// Starts the writer thread for the gossip address `addr` (`host:port`).
    pub fn spawn(
        addr: String,
        config: &LinkConfig,
        events: Sender<Control>,
    ) -> std::io::Result<PeerLink> {
        let (tx, rx) = crossbeam_channel::bounded(config.queue.max(1));
        let oldest = rx.clone();
        let config = config.clone();
        std::thread::Builder::new()
            .name(format!("gossip-out {addr}"))
            .spawn(move || {
                Writer {
                    addr,
                    config,
                    rx,
                    events,
                }
                .run()
            })?;
        Ok(PeerLink {
            tx,
            oldest,
            dropped: 0,
        })
    }

    /// Frames waiting to be written.
    pub fn queued(&self) -> usize {
        self.oldest.len()
    }

    /// Queues a frame without blocking; when the queue is full the oldest frame goes.
    pub fn send(&mut self, frame: Frame) {
        let mut frame = frame;
        loop {
            match self.tx.try_send(frame) {
                Ok(()) => return,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => {
                    frame = back;
                    if self.oldest.try_recv().is_ok() {
                        self.dropped += 1;
                    }
                }
            }
        }
    }
}

struct Writer {
    addr: String,
    config: LinkConfig,
    rx: Receiver<Frame>,
    events: Sender<Control>,
}

/// Why the writer left a connection.
enum Ended {
    /// The link was dropped: the writer stops.
    Stopped,
    Failed(String),
    /// The keyring changed under the connection: reconnect at once, then send this frame.
    Rekey(Frame),
}

/// Why a connection could not be made.
enum ConnectError {
    Failed(String),
    /// The peer did not complete the keyed handshake.
    Handshake(String),
}

/// One connection and how its frames are written.
struct Connection {
    stream: TcpStream,
    /// `None` on a plaintext connection.
    sealer: Option<Sealer>,
    /// The keyring generation the connection was checked against.
    generation: u64,
}

impl Writer {
    fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        let mut buf = Vec::new();
        let mut carried = None;
        loop {
            let failure = match self.connect() {
                Ok(conn) => {
                    backoff = FIRST_BACKOFF;
                    let _ = self.events.send(Control::LinkUp(self.addr.clone()));
                    match self.pump(conn, &mut buf, carried.take()) {
                        Ended::Stopped => return,
                        Ended::Rekey(frame) => {
                            carried = Some(frame);
                            continue;
                        }
                        Ended::Failed(why) => Control::LinkDown(self.addr.clone(), why),
                    }
                }
                Err(ConnectError::Failed(why)) => Control::LinkDown(self.addr.clone(), why),
                Err(ConnectError::Handshake(why)) => {
                    Control::HandshakeFailed(self.addr.clone(), why)
                }
            };
            carried = None;
            let _ = self.events.send(failure);
            let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
            if !self.discard_until(Instant::now() + backoff + jitter) {
                return;
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// A new TCP connection to the peer, set up for writing.
    fn dial(&self) -> Result<TcpStream, ConnectError> {
        let failed = ConnectError::Failed;
        let target = self
            .addr
            .to_socket_addrs()
            .map_err(|e| failed(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| failed("address resolves to nothing".to_owned()))?;
        let timeout = self.config.io_timeout;
        let stream = TcpStream::connect_timeout(&target, timeout)
            .map_err(|e| failed(format!("connect: {e}")))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| stream.set_read_timeout(Some(timeout)))
            .and_then(|()| {
                socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(UNACKED_TIMEOUT))
            })
            .map_err(|e| failed(format!("socket options: {e}")))?;
        Ok(stream)
    }

    /// Connects and sends the Hello: keyed when the node has a keyring (or plaintext to
    /// a peer that refuses the handshake, during the transition).
    fn connect(&self) -> Result<Connection, ConnectError> {
        let mut stream = self.dial()?;
        let Some(keyring) = &self.config.keyring else {
            return self.start(stream, None, 0);
        };
        let generation = keyring.generation();
        let active = keyring.current();
        match keyed_stream::handshake(&mut stream, &active.keyring, self.config.io_timeout) {
            Ok(sealer) => self.start(stream, Some(sealer), generation),
            Err(HandshakeError::Refused(_)) if !active.mode.always_seals() => {
                self.start(self.dial()?, None, generation)
            }
            Err(HandshakeError::Refused(why)) => Err(ConnectError::Handshake(why)),
            Err(HandshakeError::Confirmation) => {
                let why = "the peer answered the keyed hello without proving it holds the key";
                keyring.reject(Rejection::TcpBadConfirmation, &self.addr, why);
                Err(ConnectError::Handshake(why.to_owned()))
            }
            Err(HandshakeError::Local(e)) => Err(ConnectError::Failed(e.to_string())),
        }
    }

    fn start(
        &self,
        stream: TcpStream,
        sealer: Option<Sealer>,
        generation: u64,
    ) -> Result<Connection, ConnectError> {
        let mut conn = Connection {
            stream,
            sealer,
            generation,
        };
        let mut hello = Vec::new();
        self.encode(&mut conn, &self.config.hello, &mut hello)?;
        conn.stream
            .write_all(&hello)
            .map_err(|e| ConnectError::Failed(format!("hello: {e}")))?;
        Ok(conn)
    }

    /// Appends `frame` as this connection sends it: sealed, plain, or (a `keys` frame on
    /// a plaintext connection) not at all.
    fn encode(
        &self,
        conn: &mut Connection,
        frame: &Frame,
        buf: &mut Vec<u8>,
    ) -> Result<(), ConnectError> {
        match &mut conn.sealer {
            Some(sealer) => keyed_stream::encode_sealed(frame, sealer, buf)
                .map_err(|e| ConnectError::Failed(e.to_string())),
            None if keyed_stream::keyed_only(frame.frame_type()) => Ok(()),
            None => {
                codec::encode_into(frame, buf);
                Ok(())
            }
        }
    }

    /// Whether the keyring changed so that this connection must be replaced: its key
    /// was removed, or it is plaintext and plaintext is no longer sent.
    fn must_rekey(&self, conn: &mut Connection) -> bool {
        let Some(keyring) = &self.config.keyring else {
            return false;
        };
        let generation = keyring.generation();
        if generation == conn.generation {
            return false;
        }
        conn.generation = generation;
        match &conn.sealer {
            Some(sealer) => !keyring.still_holds(sealer.key_id()),
            None => keyring.current().mode.always_seals(),
        }
    }

    /// Writes queued frames (`carried` first), coalescing what is queued at the moment
    /// into one write.
    fn pump(&self, mut conn: Connection, buf: &mut Vec<u8>, carried: Option<Frame>) -> Ended {
        let mut next = carried;
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => match self.rx.recv() {
                    Ok(f) => f,
                    Err(_) => {
                        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
                        return Ended::Stopped;
                    }
                },
            };
            if self.must_rekey(&mut conn) {
                let _ = conn.stream.shutdown(std::net::Shutdown::Both);
                return Ended::Rekey(frame);
            }
            buf.clear();
            let mut encoded = self.encode(&mut conn, &frame, buf);
            while encoded.is_ok() && buf.len() < WRITE_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(frame) => encoded = self.encode(&mut conn, &frame, buf),
                    Err(_) => break,
                }
            }
            if let Err(ConnectError::Failed(why) | ConnectError::Handshake(why)) = encoded {
                return Ended::Failed(why);
            }
            if let Err(e) = conn.stream.write_all(buf) {
                return Ended::Failed(format!("write: {e}"));
            }
        }
    }

    /// Waits until `deadline`, discarding frames queued meanwhile (the peer is down;
    /// anti-entropy resends what matters). Returns false if the link was dropped.
    fn discard_until(&self, deadline: Instant) -> bool {
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::{CounterEntry, Origin, OriginDelta};
    use std::net::TcpListener;

    fn big_push(i: u64) -> Frame {
        let entries = (0..2000)
            .map(|c| CounterEntry {
                counter: format!("counter-{c:040}"),
                p: i,
                n: 0,
                version: c + 1,
                keyed: None,
            })
            .collect();
        Frame::Push {
            delta: vec![OriginDelta {
                origin: Origin::new("a", 1),
                from: 0,
                to: 2000,
                entries,
            }],
        }
    }

    #[test]
    fn a_peer_that_never_reads_fills_only_its_own_queue_and_the_oldest_frames_go() {
        let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = LinkConfig {
            queue: 4,
            io_timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(1),
            hello: Frame::Syn { digest: vec![] },
            keyring: None,
        };
        let (events_tx, events) = crossbeam_channel::unbounded();
        let addr = black_hole.local_addr().unwrap().to_string();
        let mut link = PeerLink::spawn(addr.clone(), &config, events_tx).unwrap();
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(5)),
            Ok(Control::LinkUp(a)) if a == addr
        ));
        // About 100 KB each: far more than the socket buffers hold, so the writer ends up
        // stuck in a write while the queue keeps taking frames by dropping the oldest.
        for i in 0..400 {
            link.send(big_push(i));
        }
        assert!(link.dropped > 0, "nothing was dropped");
        assert_eq!(link.oldest.len(), 4);
        let newest: Vec<Frame> = link.oldest.try_iter().collect();
        assert_eq!(newest.last(), Some(&big_push(399)));
    }
}

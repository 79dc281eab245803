//! The probe lane: membership's small, time-critical messages (pings, acks, suspicion
//! news) as single UDP datagrams on the gossip port, so a probe never waits in a TCP
//! queue behind a megabyte of deltas, nor is dropped by that queue's overflow policy.
//!
//! One thread receives: each datagram (at most [`MAX_DATAGRAM`] bytes; longer ones are
//! cut by the kernel and then fail to decode) goes to the event loop with the address it
//! came from, and the event loop decodes it. Sending is a `send_to` on the same socket
//! from the event loop; UDP sends do not block on a slow peer.

use crossbeam_channel::Sender;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest datagram read: more than any probe-lane message with its frame header and
/// seal, less than a 1500-byte MTU's payload.
pub const MAX_DATAGRAM: usize = 1472;
/// How often the receiving thread checks whether it should stop.
const POLL: Duration = Duration::from_millis(200);

/// One datagram and where it came from.
#[derive(Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The lane's socket and receiving thread.
pub struct ProbeLane {
    socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProbeLane {
    /// Binds `addr` (the gossip address: the same port as the TCP listener) and starts
    /// the receiving thread, which hands datagrams to `inbound`.
    pub fn bind(addr: SocketAddr, inbound: Sender<Datagram>) -> io::Result<ProbeLane> {
        let socket = UdpSocket::bind(addr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen for probes on UDP {addr}: {e}"),
            )
        })?;
        socket.set_read_timeout(Some(POLL))?;
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = Receiver {
            socket: socket.clone(),
            stop: stop.clone(),
            inbound,
        };
        let thread = std::thread::Builder::new()
            .name("probe-lane".into())
            .spawn(move || receiver.run())?;
        Ok(ProbeLane {
            socket,
            stop,
            thread: Some(thread),
        })
    }

    /// Sends one datagram; a failure is the peer's problem (it will look unreachable),
    /// so it is logged at debug level and otherwise ignored.
    pub fn send(&self, to: SocketAddr, bytes: &[u8]) {
        if let Err(e) = self.socket.send_to(bytes, to) {
            log::debug!("probe to {to}: {e}");
        }
    }

    /// Stops the receiving thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProbeLane {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Receiver {
    socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    inbound: Sender<Datagram>,
}

impl Receiver {
    fn run(&self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while !self.stop.load(Ordering::SeqCst) {
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) => {
                    let datagram = Datagram {
                        from,
                        bytes: buf[..len].to_vec(),
                    };
                    // A full queue means the event loop is behind: drop, as the network may.
                    if let Err(crossbeam_channel::TrySendError::Disconnected(_)) =
                        self.inbound.try_send(datagram)
                    {
                        return;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => log::debug!("probe lane: {e}"),
            }
        }
    }
}

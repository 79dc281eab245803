//! The RESP server: a thread accepting connections and a thread per connection (at most
//! [`Config::max_clients`] at once), each reading requests into a bounded buffer,
//! running every whole request it holds as one pipeline, and writing all the replies
//! with one write.
//!
//! Defences: a request must fit in [`Config::max_request`] bytes, and the parser's
//! [`Limits`] are checked before any declared size is used; a protocol error is answered
//! and the connection closed; a round of a pipeline stops at [`MAX_ROUND_COMMANDS`]
//! commands or [`MAX_ROUND_REPLY`] bytes of replies, so one read cannot make a
//! connection hold unbounded replies; a client that stops reading its replies is
//! disconnected after [`Config::write_timeout`]. Over the connection cap, a client is
//! told so and closed, as Redis does. Idle connections are kept, as Redis keeps them.

use super::about::ServerFigures;
use super::command::Args;
use super::parser::{self, Limits, DEFAULT_LIMITS};
use super::session::{NodeGone, NodeLink, Session};
use crate::http::Access;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Commands run before the replies so far are written, in one round of a pipeline.
pub const MAX_ROUND_COMMANDS: usize = 4096;
/// Reply bytes held before they are written, in one round of a pipeline.
pub const MAX_ROUND_REPLY: usize = 1 << 20;
/// A connection's read buffer starts at this size and doubles up to `max_request`.
/// Large enough that a pipeline of 1,000 counter commands is read, and so committed,
/// in one round.
const INITIAL_BUFFER: usize = 64 * 1024;
const CONNECTION_STACK: usize = 256 * 1024;

/// Default connection cap.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// Default limit on one request's size on the wire.
pub const DEFAULT_MAX_REQUEST: usize = 1 << 20;
/// Default time a client may leave its replies unread before it is disconnected.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub max_clients: usize,
    /// Largest request, in bytes on the wire; its read buffer never grows past it.
    pub max_request: usize,
    pub write_timeout: Duration,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_clients: DEFAULT_MAX_CLIENTS,
            max_request: DEFAULT_MAX_REQUEST,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            limits: DEFAULT_LIMITS,
        }
    }
}

/// What the acceptor and the connections share.
struct Shared {
    config: Config,
    port: u16,
    link: NodeLink,
    /// API tokens, checked by every session.
    access: Access,
    stop: AtomicBool,
    total: AtomicU64,
    rejected: AtomicU64,
    /// Open connections by id, to shut them down on stop; the condvar tells `stop`
    /// when one closes.
    open: Mutex<HashMap<u64, TcpStream>>,
    closed: Condvar,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn figures(&self) -> ServerFigures {
        ServerFigures {
            port: self.port,
            connected_clients: self.open().len(),
            max_clients: self.config.max_clients,
            total_connections: self.total.load(Ordering::Relaxed),
            rejected_connections: self.rejected.load(Ordering::Relaxed),
            max_bulk: self.config.limits.max_bulk,
        }
    }
}

/// The running server; [`RespServer::stop`] stops it.
pub struct RespServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl RespServer {
    pub fn spawn(
        listener: TcpListener,
        config: Config,
        link: NodeLink,
        access: Access,
    ) -> io::Result<RespServer> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            port: addr.port(),
            link,
            access,
            stop: AtomicBool::new(false),
            total: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            closed: Condvar::new(),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("redis-listen".into())
                .spawn(move || accept(listener, shared))?
        };
        Ok(RespServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends every connection after the pipeline it is running (whose
    /// replies are still written), and returns once they are closed or the write
    /// timeout has passed.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept call so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + self.shared.config.write_timeout + Duration::from_secs(1);
        let mut open = self.shared.open();
        for stream in open.values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("redis: {} connection(s) still open at stop", open.len());
                break;
            }
            open = match self.shared.closed.wait_timeout(open, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::debug!("redis accept: {e}");
                // Out of descriptors and the like: give the system a moment.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.total.fetch_add(1, Ordering::Relaxed);
        let registered = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                log::debug!("redis: cannot register a connection: {e}");
                continue;
            }
        };
        {
            let mut open = shared.open();
            if open.len() >= shared.config.max_clients {
                drop(open);
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                // A fresh socket's send buffer takes this short line without blocking.
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
                continue;
            }
            next_id += 1;
            open.insert(next_id, registered);
        }
        let id = next_id;
        let worker = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("redis-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                if let Err(e) = serve(id, stream, &worker) {
                    log::debug!("redis connection {id}: {e}");
                }
                worker.open().remove(&id);
                worker.closed.notify_all();
            });
        if let Err(e) = spawned {
            log::warn!("redis: cannot start a connection thread: {e}");
            shared.open().remove(&id);
        }
    }
}

/// Serves one connection until the client leaves, breaks the protocol, asks to quit,
/// or the node stops.
fn serve(id: u64, mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(shared.config.write_timeout))?;
    let mut session = Session::new(id, shared.link.clone(), shared.access.clone());
    let mut input = Input::new(shared.config.max_request);
    let mut ranges: Vec<Range<usize>> = Vec::new();
    loop {
        let more = run_round(&mut session, &mut input, &mut ranges, shared);
        match session.finish() {
            Ok(replies) => stream.write_all(replies)?,
            Err(NodeGone) => {
                let _ = stream.write_all(b"-ERR the node is stopping\r\n");
                return Ok(());
            }
        }
        session.written();
        if session.closing() {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        if more == Round::Ended {
            match input.fill(&mut stream)? {
                Fill::Read => {}
                Fill::Eof => return Ok(()),
                Fill::Full => session.protocol_error(&format!(
                    "Protocol error: request over the {}-byte limit",
                    shared.config.max_request
                )),
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Every whole request buffered was run; read more.
    Ended,
    /// A cap was reached with requests left: write the replies, then go on.
    Paused,
}

/// Runs the whole requests at the front of the buffer, up to the round's caps, and
/// drops them from it.
fn run_round(
    session: &mut Session,
    input: &mut Input,
    ranges: &mut Vec<Range<usize>>,
    shared: &Shared,
) -> Round {
    let mut pos = 0;
    let mut commands = 0;
    let limits = shared.config.limits;
    let round = loop {
        if session.closing() {
            break Round::Ended;
        }
        if commands >= MAX_ROUND_COMMANDS || session.buffered() >= MAX_ROUND_REPLY {
            break Round::Paused;
        }
        let data = &input.data[pos..input.filled];
        match parser::parse(data, &limits, ranges) {
            Ok(Some(n)) => {
                pos += n;
                if ranges.is_empty() {
                    continue;
                }
                commands += 1;
                if session
                    .execute(Args::new(data, ranges), &|| shared.figures())
                    .is_err()
                {
                    // `finish` reports the node gone.
                    break Round::Ended;
                }
            }
            Ok(None) => break Round::Ended,
            Err(e) => {
                session.protocol_error(&e.to_string());
                break Round::Ended;
            }
        }
    };
    input.consume(pos);
    round
}

/// A connection's read buffer: `data[..filled]` holds bytes not yet run.
struct Input {
    data: Vec<u8>,
    filled: usize,
    max: usize,
}

enum Fill {
    Read,
    Eof,
    /// The buffer is at its maximum and holds no whole request.
    Full,
}

impl Input {
    fn new(max: usize) -> Input {
        Input {
            data: vec![0; INITIAL_BUFFER.min(max)],
            filled: 0,
            max,
        }
    }

    /// Drops the first `n` bytes.
    fn consume(&mut self, n: usize) {
        self.data.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Reads what the client has sent, growing the buffer (doubling, up to `max`) only
    /// when it is full.
    fn fill(&mut self, stream: &mut impl Read) -> io::Result<Fill> {
        if self.filled == self.data.len() {
            if self.data.len() >= self.max {
                return Ok(Fill::Full);
            }
            let grown = (self.data.len() * 2).min(self.max);
            self.data.resize(grown, 0);
        }
        loop {
            match stream.read(&mut self.data[self.filled..]) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => {
                    self.filled += n;
                    return Ok(Fill::Read);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

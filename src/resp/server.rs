//! The RESP server: a thread accepting connections and a few event-loop threads (one per
//! two cores, at most [`MAX_LOOPS`]: the node's event loop and WAL thread need the rest)
//! serving them, as Redis serves its clients from an event loop. A loop waits for
//! sockets with something to read, reads each, runs every whole request it holds as one
//! pipeline and hands the pipeline's operations to the node; it does not wait for a
//! group commit: the node wakes the loop once an answer is in, and the loop writes a
//! connection's replies when all of them are. A request that needs earlier increments
//! answered first (a read after them) ends its connection's round and runs once they
//! are (only `EXEC` waits inside, for a transaction's reads after its own increments).
//! So a loop goes on reading while a batch is made durable, the requests that arrive
//! meanwhile on all its connections reach the node together for the next group commit,
//! and a request costs no thread wake-up of its own. A connection's next requests are
//! read once its replies are written, so its answers stay in order.
//!
//! Defences: a request must fit in [`Config::max_request`] bytes, and the parser's
//! [`Limits`] are checked before any declared size is used; a protocol error is answered
//! and the connection closed; a round of a pipeline stops at [`MAX_ROUND_COMMANDS`]
//! commands or [`MAX_ROUND_REPLY`] bytes of replies, so one read cannot make a
//! connection hold unbounded replies, and the other connections are served before it
//! goes on; a connection whose replies are not all written is not read from until they
//! are (they never hold up the loop), and a client that takes none of them for
//! [`Config::write_timeout`] is disconnected. Over the connection cap, a client is told
//! so and closed, as Redis does. Idle connections are kept, as Redis keeps them.

use super::about::ServerFigures;
use super::command::Args;
use super::parser::{self, Limits, DEFAULT_LIMITS};
use super::session::{Executed, NodeGone, NodeLink, Session};
use crate::http::Access;
use crate::node::event_loop::Notify;
use crossbeam_channel::{Receiver, Sender};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Commands run before the replies so far are written, in one round of a pipeline.
pub const MAX_ROUND_COMMANDS: usize = 4096;
/// Reply bytes held before they are written, in one round of a pipeline.
pub const MAX_ROUND_REPLY: usize = 1 << 20;
/// Most event loops, whatever the number of cores.
pub const MAX_LOOPS: usize = 4;
/// A connection's read buffer starts at this size and doubles up to `max_request`.
/// Large enough that a pipeline of 1,000 counter commands is read, and so committed,
/// in one round.
const INITIAL_BUFFER: usize = 64 * 1024;
/// The token of a loop's waker; connections have the others.
const WAKE: Token = Token(usize::MAX);
/// How often a loop looks for answers even if no wake-up came (a safety net: the node
/// wakes it after every answer).
const ANSWER_CHECK: Duration = Duration::from_millis(50);

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

/// What the acceptor and the loops share.
struct Shared {
    config: Config,
    port: u16,
    link: NodeLink,
    /// API tokens, checked by every session.
    access: Access,
    stop: AtomicBool,
    total: AtomicU64,
    rejected: AtomicU64,
    connected: AtomicUsize,
}

impl Shared {
    fn figures(&self) -> ServerFigures {
        ServerFigures {
            port: self.port,
            connected_clients: self.connected.load(Ordering::Relaxed),
            max_clients: self.config.max_clients,
            total_connections: self.total.load(Ordering::Relaxed),
            rejected_connections: self.rejected.load(Ordering::Relaxed),
            max_bulk: self.config.limits.max_bulk,
        }
    }
}

/// Where the acceptor hands a loop its new connections.
struct Feed {
    connections: Sender<(u64, TcpStream)>,
    waker: Arc<Waker>,
}

/// The running server; [`RespServer::stop`] stops it.
pub struct RespServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    loops: Vec<(Arc<Waker>, JoinHandle<()>)>,
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
            connected: AtomicUsize::new(0),
        });
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = (cores / 2).clamp(1, MAX_LOOPS);
        let mut feeds = Vec::with_capacity(count);
        let mut loops = Vec::with_capacity(count);
        for _ in 0..count {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
            let (connections, incoming) = crossbeam_channel::unbounded();
            let notify = {
                let waker = waker.clone();
                Notify::new(move || {
                    let _ = waker.wake();
                })
            };
            let event_loop = EventLoop::new(poll, incoming, shared.clone(), notify);
            let thread = std::thread::Builder::new()
                .name("redis-loop".into())
                .spawn(move || event_loop.run())?;
            feeds.push(Feed {
                connections,
                waker: waker.clone(),
            });
            loops.push((waker, thread));
        }
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("redis-listen".into())
                .spawn(move || accept(listener, &shared, &feeds))?
        };
        Ok(RespServer {
            addr,
            shared,
            acceptor: Some(acceptor),
            loops,
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
        for (waker, _) in &self.loops {
            let _ = waker.wake();
        }
        for (_, thread) in self.loops.drain(..) {
            let _ = thread.join();
        }
    }
}

fn accept(listener: TcpListener, shared: &Shared, feeds: &[Feed]) {
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
        // Only this thread adds connections, so the count cannot pass the cap meanwhile.
        if shared.connected.load(Ordering::SeqCst) >= shared.config.max_clients {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            // A fresh socket's send buffer takes this short line without blocking.
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
            continue;
        }
        next_id += 1;
        let feed = &feeds[(next_id % feeds.len() as u64) as usize];
        shared.connected.fetch_add(1, Ordering::SeqCst);
        if feed.connections.send((next_id, stream)).is_err() {
            // That loop has ended (the server is stopping, or the loop failed).
            shared.connected.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        if let Err(e) = feed.waker.wake() {
            log::warn!("redis: cannot wake an event loop: {e}");
        }
    }
}

/// One event loop and the connections it serves.
struct EventLoop {
    poll: Poll,
    incoming: Receiver<(u64, TcpStream)>,
    shared: Arc<Shared>,
    connections: HashMap<Token, Connection>,
    /// Connections with work left after a round (more to read, or a paused pipeline),
    /// served in the next round whether or not their socket reports anything.
    carried: Vec<Token>,
    /// Connections waiting for the node to answer their operations.
    waiting: Vec<Token>,
    ranges: Vec<Range<usize>>,
    /// What the node calls after each answer: wakes this loop.
    notify: Notify,
}

/// One client connection.
struct Connection {
    stream: MioStream,
    session: Session,
    input: Input,
    /// Replies not yet written.
    out: Vec<u8>,
    /// Since when `out` has been waiting without the client taking any of it.
    stalled_since: Option<Instant>,
    /// The socket may hold unread bytes. Readiness is edge-triggered: it is reported
    /// again only once a read has found the socket empty.
    readable: bool,
    /// A round stopped at a cap with whole requests left in `input`.
    paused: bool,
    /// The client closed its side: close once every request read is answered.
    peer_closed: bool,
    /// Close once `out` is written (`QUIT`, a protocol error, the node stopping).
    ending: bool,
    /// Waiting for the node to answer operations sent.
    waiting: bool,
    /// Listed for the current round already.
    listed: bool,
}

impl Connection {
    /// Whether a round has something to do here: requests to read or run, and the
    /// earlier replies written.
    fn has_work(&self) -> bool {
        !self.waiting && self.out.is_empty() && !self.ending && (self.paused || self.readable)
    }

    /// Whether the connection is done: every reply written and nothing more to run.
    fn done(&self) -> bool {
        !self.waiting && self.out.is_empty() && (self.ending || (self.peer_closed && !self.paused))
    }

    /// Writes what `out` holds until the socket takes no more. An error means the
    /// client is gone.
    fn write_out(&mut self, now: Instant) -> io::Result<()> {
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        if self.out.is_empty() {
            self.stalled_since = None;
        } else if written > 0 || self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        Ok(())
    }
}

impl EventLoop {
    fn new(
        poll: Poll,
        incoming: Receiver<(u64, TcpStream)>,
        shared: Arc<Shared>,
        notify: Notify,
    ) -> EventLoop {
        EventLoop {
            poll,
            incoming,
            shared,
            connections: HashMap::new(),
            carried: Vec::new(),
            waiting: Vec::new(),
            ranges: Vec::new(),
            notify,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut round: Vec<Token> = Vec::new();
        // When the next client with unread replies is due to be dropped.
        let mut stall_deadline: Option<Instant> = None;
        loop {
            let stall = stall_deadline.map(|at| at.saturating_duration_since(Instant::now()));
            let timeout = if !self.carried.is_empty() {
                Some(Duration::ZERO)
            } else if !self.waiting.is_empty() {
                Some(stall.map_or(ANSWER_CHECK, |s| s.min(ANSWER_CHECK)))
            } else {
                stall
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("redis: event loop failed: {e}");
                    break;
                }
            }
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            round.clear();
            self.complete_answered(now);
            for token in std::mem::take(&mut self.carried) {
                list(&mut self.connections, &mut round, token);
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKE {
                    self.admit(&mut round);
                    continue;
                }
                let Some(c) = self.connections.get_mut(&token) else {
                    continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    c.readable = true;
                }
                if event.is_writable() && !c.out.is_empty() && c.write_out(now).is_err() {
                    self.close(token);
                    continue;
                }
                list(&mut self.connections, &mut round, token);
            }
            self.serve(&round);
            stall_deadline = self.drop_stalled(Instant::now());
        }
        self.finish_writes();
    }

    /// Registers the connections the acceptor has handed over.
    fn admit(&mut self, round: &mut Vec<Token>) {
        while let Ok((id, stream)) = self.incoming.try_recv() {
            let token = Token(id as usize);
            match self.register(token, id, stream) {
                Ok(connection) => {
                    self.connections.insert(token, connection);
                    list(&mut self.connections, round, token);
                }
                Err(e) => {
                    log::debug!("redis: cannot serve connection {id}: {e}");
                    self.shared.connected.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn register(&self, token: Token, id: u64, stream: TcpStream) -> io::Result<Connection> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = MioStream::from_std(stream);
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let shared = &self.shared;
        Ok(Connection {
            stream,
            session: Session::new(id, shared.link.clone(), shared.access.clone())
                .notifying(self.notify.clone()),
            input: Input::new(shared.config.max_request),
            out: Vec::new(),
            stalled_since: None,
            readable: true,
            paused: false,
            peer_closed: false,
            ending: false,
            waiting: false,
            listed: false,
        })
    }

    /// One round: reads and runs the requests of every listed connection, handing each
    /// one's operations to the node; writes the replies of those with every answer in.
    fn serve(&mut self, round: &[Token]) {
        for &token in round {
            let Some(c) = self.connections.get_mut(&token) else {
                continue;
            };
            c.listed = false;
            if !c.has_work() {
                if c.done() {
                    self.close(token);
                }
                continue;
            }
            if !c.paused {
                match c.input.fill(&mut c.stream) {
                    Ok(Fill::More) => {}
                    Ok(Fill::Drained) => c.readable = false,
                    Ok(Fill::Eof) => {
                        c.readable = false;
                        c.peer_closed = true;
                    }
                    Ok(Fill::Full) => c.session.protocol_error(&format!(
                        "Protocol error: request over the {}-byte limit",
                        self.shared.config.max_request
                    )),
                    Err(e) => {
                        log::debug!("redis connection {}: {e}", token.0);
                        self.close(token);
                        continue;
                    }
                }
            }
            let shared = &self.shared;
            c.paused =
                run_round(&mut c.session, &mut c.input, &mut self.ranges, shared) == Round::Paused;
            // An error here means the node is gone, which `finish` reports.
            let _ = c.session.submit();
            c.waiting = true;
            self.waiting.push(token);
        }
        self.complete_answered(Instant::now());
    }

    /// Writes the replies of every waiting connection whose answers are all in.
    fn complete_answered(&mut self, now: Instant) {
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.retain(|&token| {
            let answered = self
                .connections
                .get_mut(&token)
                .is_none_or(|c| c.session.answered());
            if answered {
                self.complete(token, now);
            }
            !answered
        });
        self.waiting = waiting;
    }

    /// Assembles a connection's replies (waiting for any read answer still out) and
    /// writes them; closes the connection if it is done.
    fn complete(&mut self, token: Token, now: Instant) {
        let Some(c) = self.connections.get_mut(&token) else {
            return;
        };
        c.waiting = false;
        match c.session.finish() {
            Ok(replies) => c.out.extend_from_slice(replies),
            Err(NodeGone) => {
                c.out.extend_from_slice(b"-ERR the node is stopping\r\n");
                c.ending = true;
            }
        }
        c.session.written();
        c.ending |= c.session.closing();
        if c.write_out(now).is_err() || c.done() {
            self.close(token);
        } else if c.has_work() {
            self.carried.push(token);
        }
    }

    /// Disconnects the clients that have taken none of their replies for the write
    /// timeout; returns when the next of the others is due, in the same pass.
    fn drop_stalled(&mut self, now: Instant) -> Option<Instant> {
        let timeout = self.shared.config.write_timeout;
        let mut stalled = Vec::new();
        let mut next = None;
        for (&token, c) in &self.connections {
            let Some(due) = c.stalled_since.map(|since| since + timeout) else {
                continue;
            };
            if now >= due {
                stalled.push(token);
            } else {
                next = Some(next.map_or(due, |n: Instant| n.min(due)));
            }
        }
        for token in stalled {
            log::debug!("redis connection {}: replies unread, disconnected", token.0);
            self.close(token);
        }
        next
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.connections.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.shared.connected.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// At stop: writes the replies still waiting, until they are written or the write
    /// timeout has passed, then closes every connection.
    fn finish_writes(&mut self) {
        for token in std::mem::take(&mut self.waiting) {
            self.complete(token, Instant::now());
        }
        let deadline = Instant::now() + self.shared.config.write_timeout;
        let mut events = Events::with_capacity(64);
        loop {
            let now = Instant::now();
            let waiting: Vec<Token> = self.connections.keys().copied().collect();
            for token in waiting {
                let c = self.connections.get_mut(&token).expect("listed above");
                if c.write_out(now).is_err() || c.out.is_empty() {
                    self.close(token);
                }
            }
            if self.connections.is_empty() || now >= deadline {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(deadline - now));
        }
        if !self.connections.is_empty() {
            log::warn!(
                "redis: {} connection(s) closed with replies unwritten at stop",
                self.connections.len()
            );
        }
        for token in self.connections.keys().copied().collect::<Vec<_>>() {
            self.close(token);
        }
        while self.incoming.try_recv().is_ok() {
            self.shared.connected.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Adds a connection to the round once.
fn list(connections: &mut HashMap<Token, Connection>, round: &mut Vec<Token>, token: Token) {
    if let Some(c) = connections.get_mut(&token) {
        if !c.listed {
            c.listed = true;
            round.push(token);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Every whole request buffered was run; read more.
    Ended,
    /// Whole requests are left (a cap was reached, or the next request must wait for
    /// the answers in flight): write the replies, then go on.
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
                if ranges.is_empty() {
                    pos += n;
                    continue;
                }
                match session.execute(Args::new(data, ranges), &|| shared.figures()) {
                    Ok(Executed::Ran) => {}
                    Ok(Executed::WaitsForAnswers) => break Round::Paused,
                    // `finish` reports the node gone.
                    Err(NodeGone) => break Round::Ended,
                }
                pos += n;
                commands += 1;
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

#[derive(Debug, PartialEq, Eq)]
enum Fill {
    /// The buffer filled up; the socket may hold more.
    More,
    /// The socket is empty for now.
    Drained,
    /// The client closed its side.
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

    /// Reads what the client has sent until the socket is empty or the buffer full.
    /// Called after a round has run every whole request, so a full buffer holds part of
    /// one request: the buffer then doubles, up to `max`.
    fn fill(&mut self, stream: &mut impl Read) -> io::Result<Fill> {
        if self.filled == self.data.len() {
            if self.data.len() >= self.max {
                return Ok(Fill::Full);
            }
            let grown = (self.data.len() * 2).min(self.max);
            self.data.resize(grown, 0);
        }
        while self.filled < self.data.len() {
            match stream.read(&mut self.data[self.filled..]) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Fill::More)
    }
}

//! Tests of a session and of the server against a stand-in event loop: a thread that
//! answers operations and queries from a plain map and records how operations arrived,
//! so batching and ordering can be checked exactly.

use super::about::ServerFigures;
use super::command::Args;
use super::parser::{self, DEFAULT_LIMITS};
use super::server::{Config, RespServer};
use super::session::{NodeGone, NodeLink, Session};
use crate::crdt::{LocalOp, OpError, OpKind};
use crate::http::Access;
use crate::node::event_loop::{ClientOps, Query};
use crate::node::views::{CounterView, OriginTotalsView};
use crate::node_core::OpFailure;
use crate::status::{NodeStatus, StorageStatus, WalStorageStatus};
use crate::wal::WalStatus;
use crossbeam_channel::{select, Receiver, Sender};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the stand-in node saw.
#[derive(Debug, Default)]
struct Seen {
    /// Operations per request, in arrival order.
    requests: Vec<usize>,
    /// Every operation and query, in the order handled: `op NAME` or `read NAME`.
    events: Vec<String>,
}

/// Counters at most this large refuse increments, to exercise refusals.
const LIMIT: i64 = 1_000_000;

struct FakeNode {
    link: Option<NodeLink>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeNode {
    fn start() -> FakeNode {
        FakeNode::holding(None)
    }

    /// A node that answers each request of operations only once `release` has sent it
    /// a token (or been dropped): a group commit that takes as long as the test wants.
    fn held() -> (FakeNode, Sender<()>) {
        let (release, held) = crossbeam_channel::unbounded();
        (FakeNode::holding(Some(held)), release)
    }

    fn holding(held: Option<Receiver<()>>) -> FakeNode {
        let (ops_tx, ops_rx) = crossbeam_channel::unbounded();
        let (queries_tx, queries_rx) = crossbeam_channel::unbounded();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let thread = {
            let seen = seen.clone();
            std::thread::spawn(move || serve(ops_rx, queries_rx, &seen, held.as_ref()))
        };
        FakeNode {
            link: Some(NodeLink {
                ops: ops_tx,
                queries: queries_tx,
            }),
            seen,
            thread: Some(thread),
        }
    }

    fn link(&self) -> NodeLink {
        self.link.clone().expect("running")
    }

    fn requests(&self) -> Vec<usize> {
        self.seen.lock().unwrap().requests.clone()
    }

    fn events(&self) -> Vec<String> {
        self.seen.lock().unwrap().events.clone()
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.link = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers until every sender is gone; an operation past [`LIMIT`] is refused.
fn serve(
    ops: Receiver<ClientOps>,
    queries: Receiver<Query>,
    seen: &Mutex<Seen>,
    held: Option<&Receiver<()>>,
) {
    let mut values: BTreeMap<String, i64> = BTreeMap::new();
    let (mut ops_open, mut queries_open) = (true, true);
    while ops_open || queries_open {
        select! {
            recv(ops) -> msg => match msg {
                Ok(request) => {
                    if let Some(held) = held {
                        // A token, or the test's end (the sender dropped).
                        let _ = held.recv();
                    }
                    answer(request, &mut values, seen);
                }
                Err(_) => ops_open = false,
            },
            recv(queries) -> msg => match msg {
                Ok(Query::Counter(name, reply)) => {
                    seen.lock().unwrap().events.push(format!("read {name}"));
                    let written = apply_read(&name, &values);
                    let _ = reply.send(written);
                }
                Ok(Query::Status(reply)) => {
                    let wal = WalStorageStatus {
                        durable: true,
                        wal: Some(WalStatus {
                            fsync_policy: "always".into(),
                            ..WalStatus::default()
                        }),
                        ..WalStorageStatus::default()
                    };
                    let _ = reply.send(NodeStatus {
                        name: "fake".into(),
                        storage: StorageStatus::Wal(Box::new(wal)),
                        ..NodeStatus::default()
                    });
                }
                Ok(_) => {}
                Err(_) => queries_open = false,
            },
        }
    }
}

/// Applies one request of operations and answers each, as the node does.
fn answer(request: ClientOps, values: &mut BTreeMap<String, i64>, seen: &Mutex<Seen>) {
    let mut seen = seen.lock().unwrap();
    match request {
        ClientOps::One { op, reply } => {
            seen.requests.push(1);
            reply.send(apply(values, op, &mut seen));
        }
        ClientOps::Many { ops, reply, notify } => {
            seen.requests.push(ops.len());
            for op in ops {
                let _ = reply.send(apply(values, op, &mut seen));
                if let Some(notify) = &notify {
                    notify.call();
                }
            }
        }
    }
}

fn apply(
    values: &mut BTreeMap<String, i64>,
    op: LocalOp,
    seen: &mut Seen,
) -> Result<i64, OpFailure> {
    seen.events.push(format!("op {}", op.counter));
    let value = values.entry(op.counter.clone()).or_insert(0);
    let delta = match op.kind {
        OpKind::Increment => op.amount as i64,
        OpKind::Decrement => -(op.amount as i64),
    };
    if *value + delta > LIMIT {
        return Err(OpFailure::Refused(OpError::Overflow {
            counter: op.counter,
        }));
    }
    *value += delta;
    Ok(*value)
}

fn apply_read(name: &str, values: &BTreeMap<String, i64>) -> CounterView {
    let origins = match values.get(name) {
        Some(_) => vec![OriginTotalsView {
            origin: "fake/1".into(),
            p: 0,
            n: 0,
        }],
        None => Vec::new(),
    };
    CounterView {
        name: name.to_owned(),
        value: values.get(name).copied().unwrap_or(0),
        origins,
        retired: Default::default(),
        accepted: Default::default(),
    }
}

fn figures() -> ServerFigures {
    ServerFigures::default()
}

/// Runs every request in `input` (all whole) as one pipeline; returns the replies.
fn run(session: &mut Session, input: &[u8]) -> Result<String, NodeGone> {
    let mut ranges = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let data = &input[pos..];
        let n = parser::parse(data, &DEFAULT_LIMITS, &mut ranges)
            .expect("valid input")
            .expect("whole requests");
        if !ranges.is_empty() {
            session.execute(Args::new(data, &ranges), &figures)?;
        }
        pos += n;
    }
    let out = String::from_utf8(session.finish()?.to_vec()).expect("UTF-8 replies");
    session.written();
    Ok(out)
}

#[test]
fn a_pipeline_of_increments_is_one_request_and_replies_keep_their_order() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let input = "INCR a\r\n".repeat(1000);
    let out = run(&mut session, input.as_bytes()).unwrap();
    let expected: String = (1..=1000).map(|i| format!(":{i}\r\n")).collect();
    assert_eq!(out, expected);
    assert_eq!(node.requests(), vec![1000]);

    let out = run(
        &mut session,
        b"PING\r\nINCR b\r\nECHO x\r\nINCRBY b 5\r\nPING\r\n",
    )
    .unwrap();
    assert_eq!(out, "+PONG\r\n:1\r\n$1\r\nx\r\n:6\r\n+PONG\r\n");
    assert_eq!(node.requests(), vec![1000, 2]);
}

#[test]
fn reads_see_the_writes_before_them_and_not_those_after() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let out = run(
        &mut session,
        b"INCR a\r\nINCR a\r\nGET a\r\nMGET a b\r\nINCRBY a 10\r\nEXISTS a b a\r\nGET a\r\nDECRBY a 0\r\n",
    )
    .unwrap();
    assert_eq!(
        out,
        ":1\r\n:2\r\n$1\r\n2\r\n*2\r\n$1\r\n2\r\n$1\r\n0\r\n:12\r\n:2\r\n$2\r\n12\r\n:12\r\n"
    );
    assert_eq!(
        node.events(),
        [
            "op a", "op a", "read a", "read a", "read b", "op a", "read a", "read b", "read a",
            "read a", "read a"
        ]
    );
    assert_eq!(node.requests(), vec![2, 1]);
}

#[test]
fn reads_beyond_the_in_flight_cap_are_answered_in_order() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let keys: String = (0..2000).map(|i| format!(" k{i}")).collect();
    let input = format!("INCR k1999\r\nMGET{keys}\r\nMGET{keys}\r\nMGET{keys}\r\nGET k1999\r\n");
    let out = run(&mut session, input.as_bytes()).unwrap();
    let one_mget: String = std::iter::once("*2000\r\n".to_owned())
        .chain((0..2000).map(|i| {
            if i == 1999 {
                "$1\r\n1\r\n".into()
            } else {
                "$1\r\n0\r\n".into()
            }
        }))
        .collect();
    assert_eq!(
        out,
        format!(":1\r\n{one_mget}{one_mget}{one_mget}$1\r\n1\r\n")
    );
}

#[test]
fn refused_commands_apply_nothing_and_the_rest_of_the_pipeline_runs() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let out = run(
        &mut session,
        b"SET a 1\r\nINCRBY a x\r\nINCR a\r\nINCRBY a 2000000\r\nDEL a\r\nGET a\r\n",
    )
    .unwrap();
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(lines[0].starts_with("-ERR unknown command 'SET'"), "{out}");
    assert_eq!(lines[1], "-ERR value is not an integer or out of range");
    assert_eq!(lines[2], ":1");
    assert!(
        lines[3].starts_with("-ERR increment or decrement would overflow"),
        "{out}"
    );
    assert!(lines[4].starts_with("-ERR unknown command 'DEL'"), "{out}");
    assert_eq!(&lines[5..], ["$1", "1", ""]);
    assert_eq!(node.events(), ["op a", "op a", "read a"]);
}

#[test]
fn connection_commands_and_client_name() {
    let node = FakeNode::start();
    let mut session = Session::new(7, node.link(), Access::default());
    let out = run(
        &mut session,
        b"CLIENT GETNAME\r\nCLIENT SETNAME w1\r\nCLIENT GETNAME\r\nCLIENT ID\r\nSELECT 0\r\nRESET\r\nCLIENT GETNAME\r\nHELLO 2 SETNAME w2\r\nCLIENT GETNAME\r\n",
    )
    .unwrap();
    assert!(
        out.starts_with("$-1\r\n+OK\r\n$2\r\nw1\r\n:7\r\n+OK\r\n+RESET\r\n$-1\r\n*14\r\n$6\r\nserver\r\n$4\r\ngctr\r\n"),
        "{out}"
    );
    assert!(out.ends_with("$2\r\nw2\r\n"), "{out}");
    assert!(!session.closing());
    let out = run(&mut session, b"QUIT\r\n").unwrap();
    assert_eq!(out, "+OK\r\n");
    assert!(session.closing());
}

#[test]
fn info_and_config_come_from_the_node_status() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let out = run(
        &mut session,
        b"INCR a\r\nCONFIG GET appendfsync\r\nINFO persistence\r\n",
    )
    .unwrap();
    assert!(
        out.starts_with(":1\r\n*2\r\n$11\r\nappendfsync\r\n$6\r\nalways\r\n$"),
        "{out}"
    );
    assert!(out.contains("aof_enabled:1"), "{out}");
}

#[test]
fn multi_exec_runs_queued_commands_in_one_batch_and_a_refusal_aborts_it_all() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let out = run(
        &mut session,
        b"MULTI\r\nINCR a\r\nINCRBY a 4\r\nDECR b\r\nEXEC\r\n",
    )
    .unwrap();
    assert_eq!(
        out,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:1\r\n:5\r\n:-1\r\n"
    );
    assert_eq!(node.requests(), vec![3]);

    let out = run(
        &mut session,
        b"MULTI\r\nINCR a\r\nSET a 1\r\nINCR a\r\nEXEC\r\nGET a\r\n",
    )
    .unwrap();
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(lines[..2], ["+OK", "+QUEUED"]);
    assert!(lines[2].starts_with("-ERR unknown command 'SET'"), "{out}");
    assert_eq!(lines[3], "+QUEUED");
    assert!(lines[4].starts_with("-EXECABORT"), "{out}");
    assert_eq!(&lines[5..], ["$1", "5", ""]);
    assert_eq!(
        node.requests(),
        vec![3],
        "nothing of the aborted transaction was sent"
    );

    let out = run(
        &mut session,
        b"EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nINCR a\r\nDISCARD\r\nGET a\r\n",
    )
    .unwrap();
    assert_eq!(
        out,
        "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n-ERR MULTI calls can not be nested\r\n+QUEUED\r\n+OK\r\n$1\r\n5\r\n"
    );
}

#[test]
fn a_stopped_node_is_reported_not_waited_for() {
    // The node's receiving ends are gone: sending fails.
    let link = NodeLink {
        ops: crossbeam_channel::unbounded().0,
        queries: crossbeam_channel::unbounded().0,
    };
    let mut session = Session::new(1, link, Access::default());
    assert_eq!(run(&mut session, b"PING\r\n"), Ok("+PONG\r\n".into()));
    assert_eq!(run(&mut session, b"INCR a\r\n"), Err(NodeGone));
    assert_eq!(run(&mut session, b"GET a\r\n"), Err(NodeGone));

    // The node takes requests, then drops them unanswered (it stopped mid-batch): the
    // session must not wait forever.
    let (ops, ops_rx) = crossbeam_channel::unbounded();
    let (queries, queries_rx) = crossbeam_channel::unbounded();
    let dropper = std::thread::spawn(move || {
        let mut taken = 0;
        loop {
            select! {
                recv(ops_rx) -> r => match r { Ok(_) => taken += 1, Err(_) => break },
                recv(queries_rx) -> r => match r { Ok(_) => taken += 1, Err(_) => break },
            }
        }
        taken
    });
    let mut session = Session::new(2, NodeLink { ops, queries }, Access::default());
    assert_eq!(run(&mut session, b"INCR a\r\nINCR b\r\n"), Err(NodeGone));
    assert_eq!(run(&mut session, b"GET a\r\n"), Err(NodeGone));
    drop(session);
    assert_eq!(dropper.join().unwrap(), 2);
}

// ---------------------------------------------------------------- over TCP

struct TestServer {
    server: Option<RespServer>,
    addr: std::net::SocketAddr,
    _node: FakeNode,
}

impl TestServer {
    fn start(config: Config) -> TestServer {
        TestServer::with_node(config, FakeNode::start())
    }

    fn with_node(config: Config, node: FakeNode) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = RespServer::spawn(listener, config, node.link(), Access::default()).unwrap();
        TestServer {
            addr: server.local_addr(),
            server: Some(server),
            _node: node,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }
}

/// Reads until the peer closes; the bytes it sent.
fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads exactly `expected.len()` bytes and compares.
fn expect(s: &mut TcpStream, expected: &str) {
    let mut buf = vec![0; expected.len()];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), expected);
}

#[test]
fn requests_split_anywhere_across_reads_are_answered_once_whole() {
    let server = TestServer::start(Config::default());
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    let request = b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n7\r\n";
    for chunk in request.chunks(3) {
        s.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    expect(&mut s, ":7\r\n");
}

#[test]
fn protocol_errors_and_oversized_requests_are_answered_then_the_connection_closes() {
    let server = TestServer::start(Config {
        max_request: 64 * 1024,
        ..Config::default()
    });
    let mut s = server.connect();
    s.write_all(b"PING\r\n*1\r\n$999999999\r\n").unwrap();
    assert_eq!(
        read_to_close(&mut s),
        "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
    let mut s = server.connect();
    s.write_all(b"*2\r\n$4\r\nECHO\r\n$60000\r\n").unwrap();
    s.write_all(&[b'x'; 60000]).unwrap();
    s.write_all(b"\r\n").unwrap();
    let mut header = [0u8; 9];
    s.read_exact(&mut header).unwrap();
    assert_eq!(&header, b"$60000\r\nx");
    // An inline line with no end that fills the buffer to its maximum.
    let mut s = server.connect();
    s.write_all(&[b'a'; 64 * 1024]).unwrap();
    let reply = read_to_close(&mut s);
    assert!(
        reply.starts_with("-ERR Protocol error: request over the 65536-byte limit"),
        "{reply}"
    );
}

#[test]
fn connections_over_the_cap_are_told_and_closed() {
    let server = TestServer::start(Config {
        max_clients: 2,
        ..Config::default()
    });
    let mut a = server.connect();
    let mut b = server.connect();
    for s in [&mut a, &mut b] {
        s.write_all(b"PING\r\n").unwrap();
        expect(s, "+PONG\r\n");
    }
    let mut c = server.connect();
    assert_eq!(
        read_to_close(&mut c),
        "-ERR max number of clients reached\r\n"
    );
    drop(a);
    // The slot frees once the server sees the close.
    wait_for(|| {
        let mut d = server.connect();
        d.write_all(b"PING\r\n").is_ok() && {
            let mut buf = [0u8; 7];
            d.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
        }
    });
    b.write_all(b"INFO clients\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = b.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("maxclients:2"));
}

#[test]
fn stop_ends_idle_connections() {
    let mut server = TestServer::start(Config::default());
    let mut s = server.connect();
    s.write_all(b"PING\r\n").unwrap();
    expect(&mut s, "+PONG\r\n");
    server.server.take().unwrap().stop();
    assert_eq!(read_to_close(&mut s), "");
    let _ = s.shutdown(Shutdown::Both);
}

#[test]
fn requests_sent_with_the_close_are_answered_before_the_connection_ends() {
    let server = TestServer::start(Config::default());
    let mut s = server.connect();
    s.write_all(b"INCR k\r\nINCR k\r\nPING\r\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut s), ":1\r\n:2\r\n+PONG\r\n");
    // The server closed its side too, so the connection no longer counts.
    let mut t = server.connect();
    wait_for(|| connected_clients(&mut t) == 1);
}

#[test]
fn a_client_that_stops_reading_holds_up_no_one_and_is_dropped_after_the_write_timeout() {
    let server = TestServer::start(Config {
        write_timeout: Duration::from_millis(500),
        ..Config::default()
    });
    let mut slow = server.connect();
    // Echoes of 32 MiB in all, never read: far more than the socket buffers hold, so the
    // server's writes stall and it stops reading this client (this write then blocks
    // until the server drops the connection).
    let writer = {
        let mut slow = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            let payload = vec![b'x'; 64 * 1024];
            let mut request = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", payload.len()).into_bytes();
            request.extend_from_slice(&payload);
            request.extend_from_slice(b"\r\n");
            (0..512).try_for_each(|_| slow.write_all(&request))
        })
    };
    let mut fast = server.connect();
    for _ in 0..20 {
        fast.write_all(b"PING\r\n").unwrap();
        expect(&mut fast, "+PONG\r\n");
    }
    wait_for(|| connected_clients(&mut fast) == 1);
    assert!(
        writer.join().unwrap().is_err(),
        "the stalled client was not dropped"
    );
    let mut rest = Vec::new();
    match slow.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn a_read_waiting_for_its_increments_holds_up_no_other_connection() {
    let (node, release) = FakeNode::held();
    let server = TestServer::with_node(Config::default(), node);
    // Rebound after the server so it is dropped first: the server's stop then never
    // waits on an answer still held.
    let release = release;
    let mut a = server.connect();
    // Each GET needs the INCR before it answered: two group commits, both held.
    a.write_all(b"INCR k\r\nGET k\r\nINCR k\r\nGET k\r\n")
        .unwrap();
    let mut b = server.connect();
    for _ in 0..3 {
        b.write_all(b"PING\r\n").unwrap();
        expect(&mut b, "+PONG\r\n");
    }
    release.send(()).unwrap();
    // The first GET runs in the next round, with the second INCR, whose answer its
    // reply then waits for.
    expect(&mut a, ":1\r\n");
    b.write_all(b"PING\r\n").unwrap();
    expect(&mut b, "+PONG\r\n");
    release.send(()).unwrap();
    expect(&mut a, "$1\r\n1\r\n:2\r\n$1\r\n2\r\n");
}

#[test]
fn a_node_that_drops_its_requests_is_reported_and_the_connection_closed() {
    let (ops, ops_rx) = crossbeam_channel::unbounded();
    let (queries, queries_rx) = crossbeam_channel::unbounded::<Query>();
    // A node that takes one request and stops: the request and its channels are dropped.
    let node = std::thread::spawn(move || {
        let _ = ops_rx.recv();
        drop(queries_rx);
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let link = NodeLink { ops, queries };
    let mut server =
        RespServer::spawn(listener, Config::default(), link, Access::default()).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"INCR k\r\n").unwrap();
    assert_eq!(read_to_close(&mut s), "-ERR the node is stopping\r\n");
    node.join().unwrap();
    server.stop();
}

/// The server's count of open connections, asked on `s`.
fn connected_clients(s: &mut TcpStream) -> usize {
    s.write_all(b"INFO clients\r\n").unwrap();
    let mut header = String::new();
    let mut byte = [0u8; 1];
    while !header.ends_with("\r\n") {
        s.read_exact(&mut byte).unwrap();
        header.push(byte[0] as char);
    }
    let len: usize = header[1..header.len() - 2].parse().unwrap();
    let mut body = vec![0; len + 2];
    s.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .expect("INFO clients names connected_clients")
        .trim()
        .parse()
        .unwrap()
}

/// Polls `cond` every 10 ms for up to 10 s.
fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met in 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The reply bound of the one command in `input`.
fn bound_of(input: &[u8]) -> usize {
    let mut ranges = Vec::new();
    parser::parse(input, &DEFAULT_LIMITS, &mut ranges)
        .expect("valid input")
        .expect("a whole request");
    super::command::parse(Args::new(input, &ranges))
        .expect("a known command")
        .reply_bound()
}

#[test]
fn every_reply_fits_its_commands_bound() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let names = "get incr incrby decr decrby mget exists ping echo info config command hello";
    let long_name = "n".repeat(super::command::MAX_CLIENT_NAME);
    // Quotes, escaped in the overflow error: the longest message a name can make.
    let quotes = "\"".repeat(126);
    let commands = [
        "PING".to_owned(),
        "PING hello".to_owned(),
        "ECHO hello".to_owned(),
        "INCR a".to_owned(),
        "INCRBY a 0".to_owned(),
        "GET a".to_owned(),
        "MGET a b c".to_owned(),
        "EXISTS a b".to_owned(),
        "HELLO 2 SETNAME someone".to_owned(),
        format!("CLIENT SETNAME {long_name}"),
        "CLIENT GETNAME".to_owned(),
        "CLIENT ID".to_owned(),
        "COMMAND".to_owned(),
        "COMMAND INFO".to_owned(),
        format!("COMMAND INFO {names}"),
        "COMMAND DOCS".to_owned(),
        format!("COMMAND DOCS {names}"),
        "COMMAND COUNT".to_owned(),
        "INFO".to_owned(),
        "INFO everything".to_owned(),
        "CONFIG GET *".to_owned(),
        format!("INCRBY '{quotes}' {LIMIT}"),
        format!("INCR '{quotes}'"),
    ];
    for command in commands {
        let input = format!("{command}\r\n");
        let reply = run(&mut session, input.as_bytes()).unwrap();
        let bound = bound_of(input.as_bytes());
        assert!(reply.len() <= bound, "{command}: {} > {bound}", reply.len());
    }
    // Refused while parsing: an error, within an error's bound.
    let reply = run(&mut session, format!("SET {long_name} 1\r\n").as_bytes()).unwrap();
    assert!(
        reply.len() <= super::reply::MAX_ERROR_REPLY,
        "{}",
        reply.len()
    );
    let too_long = format!("CLIENT SETNAME x{long_name}\r\n");
    let reply = run(&mut session, too_long.as_bytes()).unwrap();
    assert!(
        reply.starts_with("-ERR client names are at most"),
        "{reply}"
    );
}

#[test]
fn transactions_as_large_as_the_queue_allows_run_when_their_replies_are_small() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    for (command, count) in [
        ("INCR a", 4096),
        ("MGET k0 k1 k2 k3 k4 k5 k6 k7 k8 k9", 2000),
    ] {
        let mut input = b"MULTI\r\n".to_vec();
        for _ in 0..count {
            input.extend_from_slice(format!("{command}\r\n").as_bytes());
        }
        input.extend_from_slice(b"EXEC\r\n");
        let out = run(&mut session, &input).unwrap();
        assert!(out.contains(&format!("*{count}\r\n")), "{command}");
        assert!(!out.contains("-ERR"), "{command}");
    }
}

#[test]
fn a_transaction_whose_replies_could_pass_the_round_cap_is_refused() {
    let node = FakeNode::start();
    let mut session = Session::new(1, node.link(), Access::default());
    let mut input = b"MULTI\r\n".to_vec();
    for _ in 0..4095 {
        input.extend_from_slice(b"COMMAND DOCS\r\n");
    }
    input.extend_from_slice(b"EXEC\r\n");
    let out = run(&mut session, &input).unwrap();
    assert!(
        out.contains("-ERR transaction too large"),
        "refused while queueing"
    );
    assert!(!out.contains("summary"), "no COMMAND DOCS ran");
    // QUEUED, then a refusal per command past the bound: no more than the queue held.
    assert!(out.len() < 4096 * 128, "{} bytes of replies", out.len());
    assert!(out.ends_with("Transaction discarded because of previous errors.\r\n"));

    // A long client name, read back by every queued command.
    let name = "n".repeat(super::command::MAX_CLIENT_NAME);
    let mut input = format!("CLIENT SETNAME {name}\r\nMULTI\r\n").into_bytes();
    for _ in 0..4095 {
        input.extend_from_slice(b"CLIENT GETNAME\r\n");
    }
    input.extend_from_slice(b"EXEC\r\n");
    let out = run(&mut session, &input).unwrap();
    assert!(out.contains("-ERR transaction too large"));
    assert!(out.len() < 4096 * 128, "{} bytes of replies", out.len());
}

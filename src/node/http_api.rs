//! The node's HTTP API: a small pool of worker threads taking requests from tiny_http,
//! validating them, and asking the event loop (through channels) to apply or read.
//!
//! Every answer is JSON; every error is `{"error": "..."}` with 400 (bad input), 404
//! (unknown route), 405 (wrong method), 413 (body too large) or 503 (the change could
//! not be made durable, or the node is stopping). Nothing is sent to the event loop
//! until the request is known to be well formed, so bad input changes nothing.

use super::event_loop::{OpFailure, OpRequest, Query};
use super::views::ValueView;
use crate::crdt::{validate_counter_name, LocalOp, OpKind, DEFAULT_COUNTER};
use crossbeam_channel::Sender;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// How often an idle worker checks whether it should stop.
const POLL: Duration = Duration::from_millis(100);

/// The running HTTP server; [`HttpApi::stop`] stops taking requests.
pub struct HttpApi {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// A failed request: status and message.
struct Failure(u16, String);

fn bad(msg: impl Into<String>) -> Failure {
    Failure(400, msg.into())
}

/// Where a request goes, once its path and method are known.
enum Route {
    Health,
    Status,
    Counters,
    Counter(String),
    Op(String, OpKind),
    Peers,
}

#[derive(Clone)]
struct Handler {
    ops: Sender<OpRequest>,
    queries: Sender<Query>,
    max_body: usize,
}

impl HttpApi {
    pub fn spawn(
        listener: TcpListener,
        workers: usize,
        read_timeout: Duration,
        max_body: usize,
        ops: Sender<OpRequest>,
        queries: Sender<Query>,
    ) -> std::io::Result<HttpApi> {
        let server = Server::from_listener_with_read_timeout(listener, None, Some(read_timeout))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            ops,
            queries,
            max_body,
        };
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let server = server.clone();
            let stop = stop.clone();
            let handler = handler.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            match server.recv_timeout(POLL) {
                                Ok(Some(request)) => handler.handle(request),
                                Ok(None) => {}
                                Err(e) => log::debug!("http: {e}"),
                            }
                        }
                    })?,
            );
        }
        Ok(HttpApi {
            stop,
            workers: threads,
        })
    }

    /// Stops taking requests; returns once every worker has finished its request.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Handler {
    fn handle(&self, mut request: Request) {
        let (status, body) = match self.answer(&mut request) {
            Ok(v) => (200, v),
            Err(Failure(status, msg)) => (status, json!({ "error": msg })),
        };
        let mut response = Response::from_string(body.to_string())
            .with_status_code(status)
            .with_header(json_header());
        if status == 413 {
            // The unread rest of the body would otherwise be taken for the next request.
            response.add_header(Header::from_bytes("Connection", "close").expect("valid header"));
        }
        if let Err(e) = request.respond(response) {
            log::debug!("http: cannot answer: {e}");
        }
    }

    fn answer(&self, request: &mut Request) -> Result<Value, Failure> {
        let url = request.url().to_owned();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let route = route(request.method(), path)?;
        let by = parse_query(query, matches!(route, Route::Op(..)))?;
        self.check_body(request)?;
        match route {
            Route::Health => Ok(json!({ "status": "ok" })),
            Route::Status => self.ask(Query::Status),
            Route::Counters => self.ask(Query::Counters),
            Route::Counter(name) => self.ask(|reply| Query::Counter(name, reply)),
            Route::Peers => self.ask(Query::Peers),
            Route::Op(name, kind) => self.apply(name, kind, by),
        }
    }

    /// Refuses a body over the limit, whatever its declared length.
    fn check_body(&self, request: &mut Request) -> Result<(), Failure> {
        let too_large = || {
            Failure(
                413,
                format!("request body is over the {}-byte limit", self.max_body),
            )
        };
        if request.body_length().is_some_and(|n| n > self.max_body) {
            return Err(too_large());
        }
        let mut sink = Vec::new();
        let limit = self.max_body as u64 + 1;
        request
            .as_reader()
            .take(limit)
            .read_to_end(&mut sink)
            .map_err(|e| bad(format!("cannot read the request body: {e}")))?;
        if sink.len() > self.max_body {
            return Err(too_large());
        }
        Ok(())
    }

    fn ask(&self, make: impl FnOnce(Sender<Value>) -> Query) -> Result<Value, Failure> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.queries.send(make(tx)).map_err(|_| stopping())?;
        rx.recv().map_err(|_| stopping())
    }

    fn apply(&self, name: String, kind: OpKind, amount: u64) -> Result<Value, Failure> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let op = LocalOp {
            counter: name.clone(),
            kind,
            amount,
        };
        self.ops
            .send(OpRequest::One { op, reply: tx })
            .map_err(|_| stopping())?;
        match rx.recv().map_err(|_| stopping())? {
            Ok(value) => Ok(json!(ValueView { name, value })),
            Err(OpFailure::Refused(e)) => Err(bad(e.to_string())),
            Err(OpFailure::Storage(e)) => Err(Failure(503, e)),
        }
    }
}

fn stopping() -> Failure {
    Failure(503, "the node is stopping".into())
}

fn json_header() -> Header {
    Header::from_bytes("Content-Type", "application/json").expect("valid header")
}

fn route(method: &Method, path: &str) -> Result<Route, Failure> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let (route, allowed) = match segments.as_slice() {
        ["health"] => (Route::Health, Method::Get),
        ["status"] => (Route::Status, Method::Get),
        ["peers"] => (Route::Peers, Method::Get),
        ["counters"] => (Route::Counters, Method::Get),
        ["counter"] => (Route::Counter(DEFAULT_COUNTER.into()), Method::Get),
        ["increment"] => (
            Route::Op(DEFAULT_COUNTER.into(), OpKind::Increment),
            Method::Post,
        ),
        ["decrement"] => (
            Route::Op(DEFAULT_COUNTER.into(), OpKind::Decrement),
            Method::Post,
        ),
        ["counters", name] => (Route::Counter(counter_name(name)?), Method::Get),
        ["counters", name, "increment"] => (
            Route::Op(counter_name(name)?, OpKind::Increment),
            Method::Post,
        ),
        ["counters", name, "decrement"] => (
            Route::Op(counter_name(name)?, OpKind::Decrement),
            Method::Post,
        ),
        _ => return Err(Failure(404, format!("no such route: {path}"))),
    };
    if *method != allowed {
        return Err(Failure(
            405,
            format!("{path} takes {allowed}, not {method}"),
        ));
    }
    Ok(route)
}

/// A counter name from a path segment: percent-decoded, UTF-8, and valid.
fn counter_name(segment: &str) -> Result<String, Failure> {
    let name = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| bad("counter name is not UTF-8 once percent-decoded"))?;
    validate_counter_name(&name).map_err(|e| bad(e.to_string()))?;
    Ok(name.into_owned())
}

/// The `by` parameter (1 when absent) of an operation; other routes take no parameters.
fn parse_query(query: &str, takes_by: bool) -> Result<u64, Failure> {
    let mut by = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key).decode_utf8_lossy();
        if key != "by" || !takes_by {
            return Err(bad(format!("unknown query parameter {key:?}")));
        }
        if by.is_some() {
            return Err(bad("`by` is given more than once"));
        }
        let value = percent_decode_str(value).decode_utf8_lossy();
        by = Some(parse_amount(&value)?);
    }
    Ok(by.unwrap_or(1))
}

fn parse_amount(value: &str) -> Result<u64, Failure> {
    let range = || {
        bad(format!(
            "`by` must be a whole number from 1 to {}, not {value:?}",
            i64::MAX
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(range());
    }
    match value.parse::<u64>() {
        Ok(n) if (1..=i64::MAX as u64).contains(&n) => Ok(n),
        _ => Err(range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_outside_one_to_i64_max_are_refused() {
        for bad_value in [
            "",
            "0",
            "-1",
            "+1",
            "abc",
            "1.5",
            "9223372036854775808",
            "99999999999999999999",
        ] {
            assert!(
                parse_amount(bad_value).is_err(),
                "{bad_value:?} was accepted"
            );
        }
        assert_eq!(
            parse_amount("9223372036854775807").ok(),
            Some(i64::MAX as u64)
        );
        assert_eq!(parse_amount("7").ok(), Some(7));
    }

    #[test]
    fn names_are_percent_decoded_then_validated() {
        assert_eq!(counter_name("a%2Fb").ok().as_deref(), Some("a/b"));
        assert_eq!(counter_name("caf%C3%A9").ok().as_deref(), Some("café"));
        assert!(counter_name("%FF").is_err());
        assert!(counter_name("a%0Ab").is_err());
        assert!(counter_name("").is_err());
        assert!(counter_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn query_takes_by_once_and_only_on_operations() {
        assert_eq!(parse_query("", true).ok(), Some(1));
        assert_eq!(parse_query("by=5", true).ok(), Some(5));
        assert!(parse_query("by=5&by=6", true).is_err());
        assert!(parse_query("by=5", false).is_err());
        assert!(parse_query("step=5", true).is_err());
    }
}

//! The node's HTTP API: routes, input checks, and the questions it puts to the event
//! loop (through channels) to apply or read.
//!
//! Served by the shared HTTP server (`crate::http`), so limits, JSON errors and 405 with
//! `Allow` behave as everywhere else. Errors: 400 (bad input), 404 (unknown route), 405
//! (wrong method), 413 (body too large), 422 (an idempotency key reused for another
//! operation), 431 (headers too large) or 503 (the change could not be made durable, the
//! node holds its limit of idempotency keys, or the node is stopping). Nothing is sent to the event loop
//! until the request is known to be well formed, so bad input changes nothing.
//!
//! Besides the JSON API it serves the dashboard (`GET /`, one page embedded in the
//! binary, `dashboard.html`), the JSON that page polls (`GET /dashboard.json`, open to
//! pages of other origins so one node's page can poll its peers) and Prometheus metrics
//! (`GET /metrics`, rendered here from the status, off the event loop). Each operation's
//! time from request received to answer sent goes into the `op_durations` histogram.

use super::event_loop::{ClientOps, OpReply, Query};
use super::node_keys::KeysCommandError;
use super::oneshot;
use super::views::ValueView;
use crate::crdt::{validate_counter_name, validate_key, LocalOp, OpError, OpKind, DEFAULT_COUNTER};
use crate::http::{Handler, HttpConfig, HttpServer, Reply, Request};
use crate::keyring::cluster::{Command, CommandError};
use crate::keyring::{Key, KeyId, KeyringError};
use crate::member::NodeName;
use crate::metrics::{self, NodeMetrics};
use crate::node_core::OpFailure;
use crate::status::histogram::Histogram;
use crossbeam_channel::Sender;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use std::net::TcpListener;
use std::sync::Arc;
use tiny_http::Method;

/// The dashboard page, embedded so it works offline and needs no build step.
const DASHBOARD_PAGE: &str = include_str!("dashboard.html");

/// Where a request goes, once its path is known.
enum Route {
    Dashboard,
    DashboardJson,
    Metrics,
    Health,
    Status,
    Counters,
    Counter(String),
    Op(String, OpKind),
    Peers,
    Members,
    Member(NodeName),
    /// `GET` lists the keyring, `POST` installs a key.
    Keys,
    /// `POST`: make a key primary.
    KeysPrimary,
    /// `POST`: end the transition.
    KeysEnforce,
    /// `DELETE`: remove a key.
    Key(KeyId),
}

impl Route {
    fn methods(&self) -> &'static [Method] {
        match self {
            Route::Op(..) => &[Method::Post],
            Route::Members => &[Method::Get, Method::Post],
            Route::Member(_) | Route::Key(_) => &[Method::Delete],
            Route::Keys => &[Method::Get, Method::Post],
            Route::KeysPrimary | Route::KeysEnforce => &[Method::Post],
            _ => &[Method::Get],
        }
    }
}

/// `POST /members`: an address to join through.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    addr: String,
}

/// `POST /keys`: a key to install, in base64.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallRequest {
    key: String,
}

/// `POST /keys/primary`: the key to make primary, by id (8 hex digits) or in base64.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UseRequest {
    key: String,
}

/// Starts the node's HTTP API on `listener`. Each request is answered on its
/// connection's thread: an increment waits there for its group commit, so as many
/// increments can share one fsync as there are connections.
pub fn spawn(
    listener: TcpListener,
    config: &HttpConfig,
    ops: Sender<ClientOps>,
    queries: Sender<Query>,
    op_durations: Histogram,
) -> std::io::Result<HttpServer> {
    let api = NodeApi {
        ops,
        queries,
        op_durations,
    };
    HttpServer::spawn_on_connections(listener, config, "http", Arc::new(api))
}

struct NodeApi {
    ops: Sender<ClientOps>,
    queries: Sender<Query>,
    op_durations: Histogram,
}

impl Handler for NodeApi {
    fn handle(&self, request: &Request) -> Reply {
        self.answer(request).unwrap_or_else(|reply| reply)
    }
}

impl NodeApi {
    fn answer(&self, request: &Request) -> Result<Reply, Reply> {
        let route = route(request.path)?;
        request.allow(route.methods())?;
        let by = parse_query(request.query, matches!(route, Route::Op(..)))?;
        match route {
            Route::Dashboard => Ok(Reply::with_content(
                200,
                "text/html; charset=utf-8",
                DASHBOARD_PAGE.to_owned(),
            )),
            Route::DashboardJson => Ok(self
                .ask(Query::Dashboard)?
                .with_header("Access-Control-Allow-Origin", "*")),
            Route::Metrics => self.metrics(request),
            Route::Health => Ok(Reply::ok(&serde_json::json!({ "status": "ok" }))),
            Route::Status => self.ask(Query::Status),
            Route::Counters => self.ask(Query::Counters),
            Route::Counter(name) => self.ask(|reply| Query::Counter(name, reply)),
            Route::Peers => self.ask(Query::Peers),
            Route::Members if *request.method() == Method::Get => self.ask(Query::Members),
            Route::Members => self.join(request.json()?),
            Route::Member(name) => self.remove(name),
            Route::Keys if *request.method() == Method::Get => self.keys(None),
            Route::Keys => {
                let InstallRequest { key } = request.json()?;
                let key = Key::parse(&key).map_err(|e| bad(e.to_string()))?;
                self.keys(Some(Command::Install(key)))
            }
            Route::KeysPrimary => {
                let UseRequest { key } = request.json()?;
                self.keys(Some(Command::Use(key_ref(&key)?)))
            }
            Route::KeysEnforce => self.keys(Some(Command::Enforce)),
            Route::Key(id) => self.keys(Some(Command::Remove(id))),
            Route::Op(name, kind) => {
                let timed = |reply: Reply| reply.timed(&self.op_durations);
                let key = idempotency_key(request)?;
                self.apply(name, kind, by, key).map(timed).map_err(timed)
            }
        }
    }

    fn metrics(&self, request: &Request) -> Result<Reply, Reply> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.queries
            .send(Query::Status(tx))
            .map_err(|_| stopping())?;
        let status = rx.recv().map_err(|_| stopping())?;
        let format = metrics::Format::from_accept(request.header("Accept"));
        let text = metrics::render(NodeMetrics(status), format)
            .map_err(|e| Reply::error(500, format!("cannot encode the metrics: {e}")))?;
        Ok(Reply::with_content(200, format.content_type(), text))
    }

    fn join(&self, request: JoinRequest) -> Result<Reply, Reply> {
        let addr = join_addr(&request.addr)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.queries
            .send(Query::Join(addr.clone(), tx))
            .map_err(|_| stopping())?;
        rx.recv().map_err(|_| stopping())?;
        Ok(Reply::json(202, &serde_json::json!({ "joining": addr })))
    }

    fn remove(&self, name: NodeName) -> Result<Reply, Reply> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.queries
            .send(Query::Remove(name.clone(), tx))
            .map_err(|_| stopping())?;
        if rx.recv().map_err(|_| stopping())? {
            Ok(Reply::ok(&serde_json::json!({ "removed": name })))
        } else {
            Err(Reply::error(404, format!("no live member named {name:?}")))
        }
    }

    /// The keyring, after `command` if one is given. Refusals: 404 for an unknown key or
    /// a node without a keyring, 409 for a command the cluster is not ready for, 500 when
    /// the keyring file cannot be written; nothing changes in each case.
    fn keys(&self, command: Option<Command>) -> Result<Reply, Reply> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.queries
            .send(Query::Keys(command, tx))
            .map_err(|_| stopping())?;
        match rx.recv().map_err(|_| stopping())? {
            None => Err(Reply::error(
                404,
                "this node has no keyring: gossip is not encrypted (see --keyring)",
            )),
            Some(Ok(view)) => Ok(Reply::ok(&view)),
            Some(Err(KeysCommandError::Save(e))) => Err(Reply::error(500, e)),
            Some(Err(KeysCommandError::Refused(e))) => {
                let status = match &e {
                    CommandError::Keyring(KeyringError::Unknown(_)) => 404,
                    CommandError::Keyring(KeyringError::TooMany) => 400,
                    _ => 409,
                };
                Err(Reply::error(status, e.to_string()))
            }
        }
    }

    fn ask<T: Serialize>(&self, make: impl FnOnce(Sender<T>) -> Query) -> Result<Reply, Reply> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.queries.send(make(tx)).map_err(|_| stopping())?;
        let view = rx.recv().map_err(|_| stopping())?;
        Ok(Reply::ok(&view))
    }

    fn apply(
        &self,
        name: String,
        kind: OpKind,
        amount: u64,
        key: Option<String>,
    ) -> Result<Reply, Reply> {
        let (tx, rx) = oneshot::channel();
        let op = LocalOp {
            counter: name.clone(),
            kind,
            amount,
            key,
        };
        let reply = OpReply::Once(tx);
        self.ops
            .send(ClientOps::One { op, reply })
            .map_err(|_| stopping())?;
        match rx.recv().ok_or_else(stopping)? {
            Ok(value) => Ok(Reply::ok(&ValueView { name, value })),
            Err(OpFailure::Refused(e @ OpError::VersionsExhausted)) => {
                Err(Reply::error(503, e.to_string()))
            }
            Err(OpFailure::Refused(e @ OpError::TooManyCounters { .. })) => {
                Err(Reply::error(507, e.to_string()))
            }
            Err(OpFailure::Refused(e @ OpError::KeyMismatch { .. })) => {
                Err(Reply::error(422, e.to_string()))
            }
            Err(OpFailure::Refused(e @ OpError::TooManyKeys { .. })) => {
                Err(Reply::error(503, e.to_string()))
            }
            Err(OpFailure::Refused(e)) => Err(bad(e.to_string())),
            Err(OpFailure::Storage(e) | OpFailure::Unavailable(e)) => Err(Reply::error(503, e)),
        }
    }
}

/// The `Idempotency-Key` header, checked against the key rules (400 if it breaks one).
fn idempotency_key(request: &Request) -> Result<Option<String>, Reply> {
    let Some(key) = request.header("Idempotency-Key") else {
        return Ok(None);
    };
    validate_key(key).map_err(|e| bad(e.to_string()))?;
    Ok(Some(key.to_owned()))
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::error(400, msg)
}

fn stopping() -> Reply {
    Reply::error(503, "the node is stopping")
}

fn route(path: &str) -> Result<Route, Reply> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    Ok(match segments.as_slice() {
        [""] => Route::Dashboard,
        ["dashboard.json"] => Route::DashboardJson,
        ["metrics"] => Route::Metrics,
        ["health"] => Route::Health,
        ["status"] => Route::Status,
        ["peers"] => Route::Peers,
        ["members"] => Route::Members,
        ["members", name] => Route::Member(member_name(name)?),
        ["keys"] => Route::Keys,
        ["keys", "primary"] => Route::KeysPrimary,
        ["keys", "enforce"] => Route::KeysEnforce,
        ["keys", id] => Route::Key(key_ref(id)?),
        ["counters"] => Route::Counters,
        ["counter"] => Route::Counter(DEFAULT_COUNTER.into()),
        ["increment"] => Route::Op(DEFAULT_COUNTER.into(), OpKind::Increment),
        ["decrement"] => Route::Op(DEFAULT_COUNTER.into(), OpKind::Decrement),
        ["counters", name] => Route::Counter(counter_name(name)?),
        ["counters", name, "increment"] => Route::Op(counter_name(name)?, OpKind::Increment),
        ["counters", name, "decrement"] => Route::Op(counter_name(name)?, OpKind::Decrement),
        _ => return Err(Reply::not_found(path)),
    })
}

/// A counter name from a path segment: percent-decoded, UTF-8, and valid.
fn counter_name(segment: &str) -> Result<String, Reply> {
    let name = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| bad("counter name is not UTF-8 once percent-decoded"))?;
    validate_counter_name(&name).map_err(|e| bad(e.to_string()))?;
    Ok(name.into_owned())
}

/// A member name from a path segment: percent-decoded, UTF-8, and valid.
fn member_name(segment: &str) -> Result<NodeName, Reply> {
    let name = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| bad("member name is not UTF-8 once percent-decoded"))?;
    NodeName::new(&name).map_err(|e| bad(e.to_string()))
}

/// A key named by its id (8 hex digits) or given whole in base64 (of which only the id
/// is kept).
fn key_ref(text: &str) -> Result<KeyId, Reply> {
    let text = percent_decode_str(text).decode_utf8_lossy();
    KeyId::parse(&text)
        .or_else(|| Key::parse(&text).ok().map(|k| k.id()))
        .ok_or_else(|| {
            // Not echoed: it may be a key with a typo, and error bodies are logged.
            bad(format!(
                "the {} characters given are neither a key id (8 hex digits) nor a key",
                text.chars().count()
            ))
        })
}

/// An address to join through: `HOST:PORT`, resolved here so the event loop never waits
/// on a name lookup.
fn join_addr(addr: &str) -> Result<String, Reply> {
    use std::net::ToSocketAddrs;
    if addr.is_empty() || addr.len() > crate::codec::MAX_ADDR_BYTES {
        return Err(bad(format!("`addr` {addr:?} is not HOST:PORT")));
    }
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| bad(format!("`addr` {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("`addr` {addr:?} resolves to no address")))?;
    if resolved.port() == 0 || resolved.ip().is_unspecified() {
        return Err(bad(format!("`addr` {addr:?} cannot be dialled")));
    }
    Ok(resolved.to_string())
}

/// The `by` parameter (1 when absent) of an operation; other routes take no parameters.
fn parse_query(query: &str, takes_by: bool) -> Result<u64, Reply> {
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

fn parse_amount(value: &str) -> Result<u64, Reply> {
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
    fn a_key_is_named_by_its_id_or_given_whole() {
        let key = Key::generate().unwrap();
        let id = key.id();
        assert_eq!(key_ref(&id.to_string()).ok(), Some(id));
        assert_eq!(key_ref(&key.to_base64()).ok(), Some(id));
        let encoded: String = percent_encoding::utf8_percent_encode(
            &key.to_base64(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .collect();
        assert_eq!(key_ref(&encoded).ok(), Some(id));
        for bad in ["", "primary", "0123456", "zzzzzzzz", "AAAA"] {
            assert!(key_ref(bad).is_err(), "{bad:?} was accepted");
        }
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

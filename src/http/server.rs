//! The one HTTP server under the node API and discovery: a pool of worker threads over
//! the patched tiny_http, with every limit in one place.
//!
//! - a read timeout on every connection, so a stalled client cannot hold a worker;
//! - a cap on the request line plus headers: over it, tiny_http answers 431 and closes
//!   the connection without buffering the rest;
//! - a cap on the body, read here before the handler runs: over it, 413 and the
//!   connection closes (its unread rest would be taken for the next request);
//! - every answer JSON, every error `{"error": "..."}`, 405 with `Allow`, and the same
//!   wording for the same error whichever server sends it;
//! - the API tokens ([`Access`]): checked here, before any handler, so no route can
//!   forget them: 401 without a known token, 403 for a read-only token on a change.
//!
//! A [`Handler`] sees a [`Request`] whose body is already read and within the cap, and
//! returns a [`Reply`]. A reply can ask to be timed ([`Reply::timed`]): once its answer
//! is sent, the time since the request was received (its headers read, before it waited
//! for a worker) goes into the histogram it names.

use super::access::{Access, Refusal};
use super::tls::ServerTls;
use super::ErrorBody;
use crate::status::histogram::Histogram;
use serde::Serialize;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tiny_http::{Header, Method};

/// How often an idle worker checks whether it should stop (and calls [`Handler::idle`]).
const POLL: Duration = Duration::from_millis(100);

/// Limits, threads and access of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Threads answering requests.
    pub workers: usize,
    /// Longest wait for a client's next bytes (headers or body) before its request fails
    /// and its connection is closed.
    pub read_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Largest request line plus headers accepted, in bytes.
    pub max_header: usize,
    /// Who may do what (open to all unless it has tokens).
    pub access: Access,
    /// Serve HTTPS with this certificate and key (plain HTTP without).
    pub tls: Option<ServerTls>,
}

/// Threads answering requests unless configured otherwise.
pub const DEFAULT_WORKERS: usize = 4;
/// Longest wait for a client's next bytes unless configured otherwise.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest request body unless configured otherwise.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Largest request line plus headers unless configured otherwise: browsers and proxies
/// send a few KiB at most.
pub const DEFAULT_MAX_HEADER: usize = 16 * 1024;

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            workers: DEFAULT_WORKERS,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            max_header: DEFAULT_MAX_HEADER,
            access: Access::default(),
            tls: None,
        }
    }
}

/// A request as a handler sees it.
pub struct Request<'a> {
    inner: &'a tiny_http::Request,
    /// The path as received (still percent-encoded), without the query.
    pub path: &'a str,
    /// What follows `?`, or "".
    pub query: &'a str,
    pub body: Vec<u8>,
}

impl Request<'_> {
    pub fn method(&self) -> &Method {
        self.inner.method()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &'static str) -> Option<&str> {
        self.inner
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    }

    /// Answers 405 unless the method is one of `allowed`.
    pub fn allow(&self, allowed: &[Method]) -> Result<(), Reply> {
        if allowed.contains(self.method()) {
            return Ok(());
        }
        let names: Vec<String> = allowed.iter().map(Method::to_string).collect();
        let allow = names.join(", ");
        Err(Reply::error(
            405,
            format!("{} takes {allow}, not {}", self.path, self.method()),
        )
        .with_header("Allow", &allow))
    }

    /// The body as JSON of type `T`, or 400 saying why not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Reply> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Reply::error(400, format!("bad request body: {e}")))
    }
}

/// An answer: a status, a body and its headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    headers: Vec<Header>,
    /// Where the time from request received to answer sent goes, if anywhere.
    timer: Option<Histogram>,
}

impl Reply {
    /// `value` as JSON with `status`.
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        match serde_json::to_string(value) {
            Ok(body) => Reply {
                status,
                body,
                headers: vec![header("Content-Type", "application/json")],
                timer: None,
            },
            Err(e) => Reply::error(500, format!("cannot encode the answer: {e}")),
        }
    }

    /// 200 with `value` as JSON.
    pub fn ok(value: &impl Serialize) -> Reply {
        Reply::json(200, value)
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            &ErrorBody {
                error: message.into(),
            },
        )
    }

    /// 404 for a path no route takes.
    pub fn not_found(path: &str) -> Reply {
        Reply::error(404, format!("no such route: {path}"))
    }

    /// A body of another type than JSON.
    pub fn with_content(status: u16, content_type: &str, body: String) -> Reply {
        Reply {
            status,
            body,
            headers: vec![header("Content-Type", content_type)],
            timer: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push(header(name, value));
        self
    }

    /// Once this answer is sent, records the time since its request was received.
    pub fn timed(mut self, histogram: &Histogram) -> Reply {
        self.timer = Some(histogram.clone());
        self
    }
}

/// What a server does with requests.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request) -> Reply;

    /// Called by a worker that waited [`POLL`] without a request.
    fn idle(&self) {}
}

/// A running server; [`HttpServer::stop`] (or drop) stops taking requests.
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `listener` with `config.workers` threads named `{name}-{i}`.
    pub fn spawn(
        listener: TcpListener,
        config: &HttpConfig,
        name: &str,
        handler: Arc<dyn Handler>,
    ) -> io::Result<HttpServer> {
        let local_addr = listener.local_addr()?;
        let tls = config.tls.as_ref().map(|tls| tiny_http::SslConfig {
            certificate: tls.certificate_pem.clone(),
            private_key: tls.private_key_pem.clone(),
        });
        let server = tiny_http::Server::from_listener_with_limits(
            listener,
            tls,
            Some(config.read_timeout),
            Some(config.max_header),
        )
        .map_err(|e| io::Error::other(format!("cannot serve HTTP on {local_addr}: {e}")))?;
        log_security(name, local_addr, config);
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 0..config.workers.max(1) {
            let worker = Worker {
                server: server.clone(),
                handler: handler.clone(),
                stop: stop.clone(),
                max_body: config.max_body,
                access: config.access.clone(),
            };
            workers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(HttpServer {
            local_addr,
            stop,
            workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server from any thread (a signal handler, say).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Stops taking requests; returns once every worker has finished its request.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.join();
    }

    /// Returns once the server has been stopped (through a [`StopHandle`]) and every
    /// worker has finished.
    pub fn join(&mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Says at start what a server requires, and warns when its tokens would cross the
/// network in clear.
fn log_security(name: &str, addr: SocketAddr, config: &HttpConfig) {
    let tls = config.tls.is_some();
    let tokens = config.access.required();
    if tls || tokens {
        let scheme = if tls { "HTTPS" } else { "plain HTTP" };
        let needs = if tokens { ", API tokens required" } else { "" };
        log::info!("{name} on {addr}: {scheme}{needs}");
    }
    if tokens && !tls && !addr.ip().is_loopback() {
        log::warn!(
            "{name} on {addr}: API tokens over plain HTTP cross the network in clear; \
             add --tls-cert and --tls-key"
        );
    }
}

/// Asks a server to stop; cheap to clone.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Worker {
    server: Arc<tiny_http::Server>,
    handler: Arc<dyn Handler>,
    stop: Arc<AtomicBool>,
    max_body: usize,
    access: Access,
}

impl Worker {
    fn run(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.server.recv_timeout(POLL) {
                Ok(Some(request)) => self.serve(request),
                Ok(None) => self.handler.idle(),
                Err(e) => log::debug!("http: {e}"),
            }
        }
    }

    /// The request's body, once its token allows it and its body is within the cap.
    /// A refused request's body is never read into memory: tiny_http drains it (through
    /// a fixed buffer, within the read timeout) before the connection's next request.
    fn admit(&self, request: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
        let reads = matches!(request.method(), Method::Get | Method::Head);
        let url = request.url();
        let path = url.split_once('?').map_or(url, |(path, _)| path);
        let authorization = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str());
        self.access
            .check_http(path, reads, authorization)
            .map_err(refused)?;
        read_body(request, self.max_body)
    }

    fn serve(&self, mut request: tiny_http::Request) {
        let received = request.received_at();
        let reply = match self.admit(&mut request) {
            Ok(body) => {
                let url = request.url().to_owned();
                let (path, query) = url.split_once('?').unwrap_or((&url, ""));
                let incoming = Request {
                    inner: &request,
                    path,
                    query,
                    body,
                };
                self.handler.handle(&incoming)
            }
            Err(reply) => reply,
        };
        if reply.status >= 400 {
            log::debug!(
                "{} {} -> {} {}",
                request.method(),
                request.url(),
                reply.status,
                reply.body
            );
        }
        let mut response =
            tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        for h in reply.headers {
            response.add_header(h);
        }
        if let Err(e) = request.respond(response) {
            log::debug!("http: cannot answer: {e}");
        }
        if let Some(timer) = reply.timer {
            timer.observe_duration(received.elapsed());
        }
    }
}

/// 401 (with the `WWW-Authenticate` challenge of RFC 6750) or 403.
fn refused(refusal: Refusal) -> Reply {
    let (status, message, challenge) = match refusal {
        Refusal::Unauthenticated(message) => (401, message, "Bearer realm=\"gctr\""),
        Refusal::Forbidden(message) => (
            403,
            message,
            "Bearer realm=\"gctr\", error=\"insufficient_scope\"",
        ),
    };
    Reply::error(status, message).with_header("WWW-Authenticate", challenge)
}

/// Reads the whole body if it is within `max` bytes, whatever length was declared.
fn read_body(request: &mut tiny_http::Request, max: usize) -> Result<Vec<u8>, Reply> {
    // The unread rest of a refused body would be taken for the next request.
    let too_large = || {
        Reply::error(413, format!("request body is over the {max}-byte limit"))
            .with_header("Connection", "close")
    };
    if request.body_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Reply::error(400, format!("cannot read the request body: {e}")))?;
    if body.len() > max {
        return Err(too_large());
    }
    Ok(body)
}

/// A header from gctr's own ASCII names and values.
fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("gctr's headers are ASCII")
}

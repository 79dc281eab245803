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
//! Requests are answered either by a pool of worker threads ([`HttpServer::spawn`]) or on
//! the thread of each request's connection ([`HttpServer::spawn_on_connections`]): the
//! latter saves two thread hand-offs per request and suits a handler that waits (the
//! node's increments wait for their group commit), since the requests in progress are
//! then bounded by the connections, not by a pool.
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Most connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
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
/// Most open connections unless configured otherwise: each holds a thread and a file
/// descriptor, and clients that open connections without end must not use up either
/// (below the common limit of 1,024 descriptors, with room for gossip and the WAL).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            workers: DEFAULT_WORKERS,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            max_header: DEFAULT_MAX_HEADER,
            max_connections: DEFAULT_MAX_CONNECTIONS,
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

/// The log line of a request answered with an error: method, URL and answer, leaving
/// out what may hold a key (see [`loggable_url`]; the answer may quote the path, as a
/// 404 does, so it is left out with it).
fn refusal_line(method: &tiny_http::Method, url: &str, reply: &Reply) -> String {
    let shown = loggable_url(url);
    let body = if shown.len() == url.len() {
        reply.body.as_str()
    } else {
        "(not shown: the path may hold a key)"
    };
    format!("{method} {shown} -> {} {body}", reply.status)
}

/// `url` as logs may show it: a path under `/keys/` can carry a whole gossip key (a
/// node takes a key as well as its id there), so what follows `/keys/` is left out.
fn loggable_url(url: &str) -> &str {
    match url.find("/keys/") {
        Some(at) => &url[..at + "/keys/".len()],
        None => url,
    }
}

/// A running server; [`HttpServer::stop`] (or drop) stops taking requests.
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    /// Serving on connection threads: the server (kept open until stopped) and its
    /// requests in progress.
    on_connections: Option<(Arc<tiny_http::Server>, Arc<AtomicUsize>)>,
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
        let server = tiny_http::Server::from_listener_with_limits(
            listener,
            ssl_config(config),
            Some(config.read_timeout),
            Some(config.max_header),
            Some(config.max_connections),
        )
        .map_err(|e| io::Error::other(format!("cannot serve HTTP on {local_addr}: {e}")))?;
        log_security(name, local_addr, config);
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 0..config.workers.max(1) {
            let worker = Worker {
                server: server.clone(),
                service: Service {
                    handler: handler.clone(),
                    max_body: config.max_body,
                    access: config.access.clone(),
                },
                stop: stop.clone(),
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
            on_connections: None,
        })
    }

    /// Serves `listener` answering each request on the thread of its connection (one
    /// per open connection, as tiny_http keeps them); `config.workers` is not used and
    /// [`Handler::idle`] never called. Once stopped, a request gets 503 and its
    /// connection is closed.
    pub fn spawn_on_connections(
        listener: TcpListener,
        config: &HttpConfig,
        name: &str,
        handler: Arc<dyn Handler>,
    ) -> io::Result<HttpServer> {
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = Service {
            handler,
            max_body: config.max_body,
            access: config.access.clone(),
        };
        let (stopped, counted) = (stop.clone(), in_flight.clone());
        let serve = move |request: tiny_http::Request| {
            // Counted before the stop flag is read, so `stop` waits for this request if
            // it is let in.
            counted.fetch_add(1, Ordering::SeqCst);
            if stopped.load(Ordering::SeqCst) {
                let reply =
                    Reply::error(503, "the server is stopping").with_header("Connection", "close");
                respond(request, reply);
            } else {
                service.serve(request);
            }
            counted.fetch_sub(1, Ordering::SeqCst);
        };
        let server = tiny_http::Server::from_listener_with_handler(
            listener,
            ssl_config(config),
            Some(config.read_timeout),
            Some(config.max_header),
            Some(config.max_connections),
            Arc::new(serve),
        )
        .map_err(|e| io::Error::other(format!("cannot serve HTTP on {local_addr}: {e}")))?;
        log_security(name, local_addr, config);
        Ok(HttpServer {
            local_addr,
            stop,
            workers: Vec::new(),
            on_connections: Some((Arc::new(server), in_flight)),
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
    /// request in progress has been answered.
    pub fn join(&mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some((_server, in_flight)) = self.on_connections.take() {
            while !self.stop.load(Ordering::SeqCst) || in_flight.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// tiny_http's TLS settings from `config`, when it serves HTTPS.
fn ssl_config(config: &HttpConfig) -> Option<tiny_http::SslConfig> {
    config.tls.as_ref().map(|tls| tiny_http::SslConfig {
        certificate: tls.certificate_pem.clone(),
        private_key: tls.private_key_pem.clone(),
    })
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
    service: Service,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.server.recv_timeout(POLL) {
                Ok(Some(request)) => self.service.serve(request),
                Ok(None) => self.service.handler.idle(),
                Err(e) => log::debug!("http: {e}"),
            }
        }
    }
}

/// What answers a request, on whichever thread.
struct Service {
    handler: Arc<dyn Handler>,
    max_body: usize,
    access: Access,
}

impl Service {
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
            let line = refusal_line(request.method(), request.url(), &reply);
            log::debug!("{line}");
        }
        let timer = reply.timer.clone();
        respond(request, reply);
        if let Some(timer) = timer {
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

fn respond(request: tiny_http::Request, reply: Reply) {
    let mut response = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
    for h in reply.headers {
        response.add_header(h);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("http: cannot answer: {e}");
    }
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

#[cfg(test)]
mod tests {
    //! Serving on connection threads: a stop waits for the requests in progress, and a
    //! request after it is refused.

    use super::*;
    use crossbeam_channel::{bounded, Receiver, Sender};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    #[test]
    fn logs_leave_out_what_follows_keys_in_a_path() {
        let key = "/keys/c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcyEhIQ%3D%3D";
        assert_eq!(loggable_url(key), "/keys/");
        assert_eq!(loggable_url("/v1/keys/abc?x=1"), "/v1/keys/");
        assert_eq!(loggable_url("/keys"), "/keys");
        assert_eq!(
            loggable_url("/counters/a/increment?by=2"),
            "/counters/a/increment?by=2"
        );
        // A key with a '/' in its base64 is no route: the 404 quotes the path.
        let path = "/keys/rgwfSsLRhVAyWMQx/rENW4pM=";
        let reply = Reply::error(404, format!("no such route: {path}"));
        let line = refusal_line(&tiny_http::Method::Delete, path, &reply);
        assert!(!line.contains("rgwf"), "{line}");
        let reply = Reply::error(404, "no such route: /nope");
        let line = refusal_line(&tiny_http::Method::Get, "/nope", &reply);
        assert!(
            line.ends_with("/nope -> 404 {\"error\":\"no such route: /nope\"}"),
            "{line}"
        );
    }

    /// Tells when a request starts, then answers it once let go.
    struct Gate {
        started: Sender<()>,
        go: Receiver<()>,
    }

    impl Handler for Gate {
        fn handle(&self, _request: &Request) -> Reply {
            let _ = self.started.send(());
            let _ = self.go.recv();
            Reply::ok(&"done")
        }
    }

    fn status_of(reader: &mut BufReader<TcpStream>) -> String {
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut line = String::new();
        let mut len = 0;
        while reader.read_line(&mut line).unwrap() > 2 {
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            line.clear();
        }
        let mut body = vec![0; len];
        std::io::Read::read_exact(reader, &mut body).unwrap();
        status.trim().to_owned()
    }

    #[test]
    fn stop_waits_for_the_requests_in_progress_and_later_ones_get_503() {
        let (started_tx, started) = bounded(1);
        let (go_tx, go) = bounded(1);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let gate = Arc::new(Gate {
            started: started_tx,
            go,
        });
        let mut server =
            HttpServer::spawn_on_connections(listener, &HttpConfig::default(), "test", gate)
                .unwrap();
        let mut conn = TcpStream::connect(server.local_addr()).unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        conn.write_all(request).unwrap();
        started.recv().unwrap();

        let (stopped_tx, stopped) = bounded(1);
        std::thread::spawn(move || {
            server.stop();
            stopped_tx.send(()).unwrap();
        });
        // Cannot pass wrongly: a correct stop never returns while the request waits.
        let early = stopped.recv_timeout(Duration::from_millis(100));
        assert!(early.is_err(), "stop returned with a request in progress");
        go_tx.send(()).unwrap();
        assert_eq!(status_of(&mut reader), "HTTP/1.1 200 OK");
        stopped.recv().unwrap();

        // The same keep-alive connection, after the stop.
        conn.write_all(request).unwrap();
        assert_eq!(status_of(&mut reader), "HTTP/1.1 503 Service Unavailable");
    }
}

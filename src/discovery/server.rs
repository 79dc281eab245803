//! The discovery server: the `Registry` behind a small JSON HTTP API on tiny_http.
//!
//! A few worker threads share one tiny_http server and one locked registry; the registry
//! holds the only state, and the server's clock (time since start, monotonic) is read
//! here and passed in. Expiry is lazy on every request, and a worker idle for a moment
//! sweeps too, so each join and each expiry is logged once, soon after it happens.
//! Every answer is JSON; every error is `{"error": "..."}` with 400, 404, 405, 413 or 503.

use super::api::{Deregister, Deregistered, ErrorBody, Health, NodeInfo, Registered};
use super::registry::{millis, Registry, Upsert, DEFAULT_MAX_MEMBERS};
use serde::Serialize;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response};

/// How long a member is kept without a heartbeat unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// Largest request body accepted; a bigger one gets 413.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Longest wait for a client's next bytes (headers or body) before its request fails
/// and its connection is closed, so a stalled client cannot hold a worker.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);

const WORKERS: usize = 4;
/// How often an idle worker wakes to sweep expired members and check for a stop.
const IDLE_TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub ttl: Duration,
    pub max_members: usize,
    pub max_body: usize,
    pub read_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            ttl: DEFAULT_TTL,
            max_members: DEFAULT_MAX_MEMBERS,
            max_body: DEFAULT_MAX_BODY,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

pub struct DiscoveryServer {
    http: tiny_http::Server,
    local_addr: SocketAddr,
    registry: Mutex<Registry>,
    started: Instant,
    max_body: usize,
    stop: Arc<AtomicBool>,
}

/// Asks a running server to stop; cheap to clone, safe from a signal handler thread.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Reply {
    status: u16,
    body: String,
    allow: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, value: &impl Serialize) -> Reply {
        Reply {
            status,
            body: serde_json::to_string(value).expect("API types serialize"),
            allow: None,
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            &ErrorBody {
                error: message.into(),
            },
        )
    }
}

impl DiscoveryServer {
    /// Binds `addr` (port 0 picks a free port; see `local_addr`).
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> Result<DiscoveryServer, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let http = tiny_http::Server::from_listener_with_read_timeout(
            listener,
            None,
            Some(config.read_timeout),
        )
        .map_err(|e| format!("cannot serve on {addr}: {e}"))?;
        let local_addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("{addr} is not an IP listener"))?;
        Ok(DiscoveryServer {
            http,
            local_addr,
            registry: Mutex::new(Registry::new(config.ttl, config.max_members)),
            started: Instant::now(),
            max_body: config.max_body,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Serves until `StopHandle::stop` is called, then returns once every worker is done.
    pub fn run(self) {
        thread::scope(|scope| {
            for _ in 0..WORKERS {
                scope.spawn(|| self.work());
            }
        });
        log::info!("discovery on {} stopped", self.local_addr);
    }

    fn work(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.http.recv_timeout(IDLE_TICK) {
                Ok(Some(request)) => self.answer(request),
                Ok(None) => drop(self.locked_registry()),
                Err(e) => {
                    log::warn!("accepting a request failed: {e}");
                    thread::sleep(IDLE_TICK);
                }
            }
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The registry with every expired member removed (and logged).
    fn locked_registry(&self) -> MutexGuard<'_, Registry> {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        for gone in registry.expire(self.now()) {
            log::info!(
                "{} expired: no heartbeat for over {}",
                gone.name,
                humantime::format_duration(registry.ttl())
            );
        }
        registry
    }

    fn answer(&self, mut request: Request) {
        let reply = self.route(&mut request);
        if reply.status >= 400 {
            log::debug!(
                "{} {} -> {} {}",
                request.method(),
                request.url(),
                reply.status,
                reply.body
            );
        }
        let mut response = Response::from_string(reply.body)
            .with_status_code(reply.status)
            .with_header(header("Content-Type", "application/json"));
        if let Some(allow) = reply.allow {
            response.add_header(header("Allow", allow));
        }
        if let Err(e) = request.respond(response) {
            log::debug!("answering a request failed: {e}");
        }
    }

    fn route(&self, request: &mut Request) -> Reply {
        let path = request.url().split('?').next().unwrap_or("").to_owned();
        let (allowed, wanted) = match path.as_str() {
            "/health" | "/peers" => ("GET", Method::Get),
            "/register" | "/heartbeat" | "/deregister" => ("POST", Method::Post),
            _ => return Reply::error(404, format!("no route {path}")),
        };
        if *request.method() != wanted {
            let mut reply = Reply::error(
                405,
                format!("{path} takes {allowed}, not {}", request.method()),
            );
            reply.allow = Some(allowed);
            return reply;
        }
        match path.as_str() {
            "/health" => self.health(),
            "/peers" => self.peers(),
            "/deregister" => match self.read_json::<Deregister>(request) {
                Ok(body) => self.deregister(body),
                Err(reply) => reply,
            },
            _ => match self.read_json::<NodeInfo>(request) {
                Ok(info) => self.upsert(info),
                Err(reply) => reply,
            },
        }
    }

    fn health(&self) -> Reply {
        let registry = self.locked_registry();
        Reply::json(
            200,
            &Health {
                status: "ok".into(),
                members: registry.len(),
                ttl_ms: millis(registry.ttl()),
            },
        )
    }

    fn peers(&self) -> Reply {
        let registry = self.locked_registry();
        Reply::json(200, &registry.members(self.now()))
    }

    fn upsert(&self, info: NodeInfo) -> Reply {
        let mut registry = self.locked_registry();
        let (name, addr, http) = (info.name.clone(), info.addr, info.http);
        match registry.upsert(self.now(), info) {
            Ok(Upsert::Joined) => {
                log::info!("{name} joined (gossip {addr}, http {http})");
            }
            Ok(Upsert::Moved { previous }) => log::info!(
                "{name} moved (gossip {} -> {addr}, http {} -> {http})",
                previous.addr,
                previous.http
            ),
            Ok(Upsert::Refreshed) => {}
            Err(full) => {
                log::warn!("refused {name}: {full}");
                return Reply::error(503, full.to_string());
            }
        }
        Reply::json(
            200,
            &Registered {
                ttl_ms: millis(registry.ttl()),
                members: registry.len(),
            },
        )
    }

    fn deregister(&self, body: Deregister) -> Reply {
        let removed = self.locked_registry().remove(&body.name).is_some();
        if removed {
            log::info!("{} deregistered", body.name);
        }
        Reply::json(200, &Deregistered { removed })
    }

    /// Reads at most `max_body` bytes and parses them as `T`; a reply to send otherwise.
    fn read_json<T: serde::de::DeserializeOwned>(&self, request: &mut Request) -> Result<T, Reply> {
        let too_big = || Reply::error(413, format!("request body is over {} bytes", self.max_body));
        if request.body_length().is_some_and(|n| n > self.max_body) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        let limit = u64::try_from(self.max_body)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        request
            .as_reader()
            .take(limit)
            .read_to_end(&mut body)
            .map_err(|e| Reply::error(400, format!("cannot read the request body: {e}")))?;
        if body.len() > self.max_body {
            return Err(too_big());
        }
        serde_json::from_slice(&body)
            .map_err(|e| Reply::error(400, format!("bad request body: {e}")))
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

//! The discovery server: the `Registry` behind a small JSON HTTP API, served by the
//! shared HTTP server (`crate::http`).
//!
//! The workers share one locked registry; the registry holds the only state, and the
//! server's clock (time since start, monotonic) is read here and passed in. Expiry is
//! lazy on every request, and a worker idle for a moment sweeps too, so each join and
//! each expiry is logged once, soon after it happens, and counted for `GET /status` and
//! `GET /metrics` (Prometheus, rendered from the [`DiscoveryStatus`]). Every other answer
//! is JSON; every error is `{"error": "..."}` with 400, 404, 405 (with `Allow`), 413, 431
//! or 503.

use super::api::{Deregister, Deregistered, Health, NodeInfo, Registered};
use super::registry::{Registry, Upsert, DEFAULT_MAX_MEMBERS};
use crate::http::server::StopHandle;
use crate::http::{Access, Handler, HttpConfig, HttpServer, Reply, Request};
use crate::metrics::{self, DiscoveryMetrics};
use crate::status::process::ProcessStatus;
use crate::status::{millis, DiscoveryStatus, RegistryEvents};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tiny_http::Method;

/// How long a member is kept without a heartbeat unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// Most HTTP connections unless configured otherwise: every registered node keeps one
/// open (its heartbeats reuse it), so more than a node's API needs.
pub const DEFAULT_DISCOVERY_CONNECTIONS: usize = 4096;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub ttl: Duration,
    pub max_members: usize,
    pub http: HttpConfig,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            ttl: DEFAULT_TTL,
            max_members: DEFAULT_MAX_MEMBERS,
            http: HttpConfig {
                max_connections: DEFAULT_DISCOVERY_CONNECTIONS,
                ..HttpConfig::default()
            },
        }
    }
}

/// A running discovery server.
pub struct DiscoveryServer {
    http: HttpServer,
}

impl DiscoveryServer {
    /// Binds `addr` (port 0 picks a free port; see `local_addr`) and starts serving.
    pub fn start(addr: SocketAddr, config: ServerConfig) -> Result<DiscoveryServer, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let api = Discovery {
            registry: Mutex::new(Registry::new(config.ttl, config.max_members)),
            events: Mutex::new(RegistryEvents::default()),
            addr: listener
                .local_addr()
                .map_or(addr.to_string(), |a| a.to_string()),
            started: Instant::now(),
            access: config.http.access.clone(),
        };
        let http = HttpServer::spawn(listener, &config.http, "discovery", Arc::new(api))
            .map_err(|e| e.to_string())?;
        Ok(DiscoveryServer { http })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.http.stop_handle()
    }

    /// Returns once a [`StopHandle`] stopped the server and every worker is done.
    pub fn wait(mut self) {
        self.http.join();
        log::info!("discovery on {} stopped", self.http.local_addr());
    }
}

struct Discovery {
    registry: Mutex<Registry>,
    /// Taken only after `registry`, never the other way round.
    events: Mutex<RegistryEvents>,
    addr: String,
    started: Instant,
    /// Checked by the HTTP server; read here for its refusal counts.
    access: Access,
}

impl Handler for Discovery {
    fn handle(&self, request: &Request) -> Reply {
        self.route(request).unwrap_or_else(|reply| reply)
    }

    /// Sweeps expired members, so each expiry is logged soon after it happens.
    fn idle(&self) {
        drop(self.locked_registry());
    }
}

impl Discovery {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The registry with every expired member removed (logged and counted).
    fn locked_registry(&self) -> MutexGuard<'_, Registry> {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        for gone in registry.expire(self.now()) {
            self.count(|e| e.expired += 1);
            log::info!(
                "{} expired: no heartbeat for over {}",
                gone.name,
                humantime::format_duration(registry.ttl())
            );
        }
        registry
    }

    fn count(&self, event: impl FnOnce(&mut RegistryEvents)) {
        event(&mut self.events.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn status(&self) -> DiscoveryStatus {
        let registry = self.locked_registry();
        DiscoveryStatus {
            addr: self.addr.clone(),
            uptime_ms: millis(self.now()),
            members: registry.len(),
            max_members: registry.max_members(),
            ttl_ms: millis(registry.ttl()),
            events: *self.events.lock().unwrap_or_else(|p| p.into_inner()),
            access: self.access.status(),
            process: ProcessStatus::read(),
        }
    }

    fn metrics(&self, request: &Request) -> Reply {
        let format = metrics::Format::from_accept(request.header("Accept"));
        match metrics::render(DiscoveryMetrics(self.status()), format) {
            Ok(text) => Reply::with_content(200, format.content_type(), text),
            Err(e) => Reply::error(500, format!("cannot encode the metrics: {e}")),
        }
    }

    fn route(&self, request: &Request) -> Result<Reply, Reply> {
        let methods: &[Method] = match request.path {
            "/health" | "/peers" | "/status" | "/metrics" => &[Method::Get],
            "/register" | "/heartbeat" | "/deregister" => &[Method::Post],
            _ => return Err(Reply::not_found(request.path)),
        };
        request.allow(methods)?;
        Ok(match request.path {
            "/health" => self.health(),
            "/status" => Reply::ok(&self.status()),
            "/metrics" => self.metrics(request),
            "/peers" => Reply::ok(&self.locked_registry().members(self.now())),
            "/deregister" => self.deregister(request.json()?),
            _ => self.upsert(request.json()?),
        })
    }

    fn health(&self) -> Reply {
        let registry = self.locked_registry();
        Reply::ok(&Health {
            status: "ok".into(),
            members: registry.len(),
            ttl_ms: millis(registry.ttl()),
        })
    }

    fn upsert(&self, info: NodeInfo) -> Reply {
        let mut registry = self.locked_registry();
        let (name, addr, http) = (info.name.clone(), info.addr, info.http);
        match registry.upsert(self.now(), info) {
            Ok(Upsert::Joined) => {
                self.count(|e| e.joined += 1);
                log::info!("{name} joined (gossip {addr}, http {http})");
            }
            Ok(Upsert::Moved { previous }) => {
                self.count(|e| e.moved += 1);
                log::info!(
                    "{name} moved (gossip {} -> {addr}, http {} -> {http})",
                    previous.addr,
                    previous.http
                );
            }
            Ok(Upsert::Refreshed) => self.count(|e| e.refreshed += 1),
            Err(full) => {
                self.count(|e| e.refused += 1);
                log::warn!("refused {name}: {full}");
                return Reply::error(503, full.to_string());
            }
        }
        Reply::ok(&Registered {
            ttl_ms: millis(registry.ttl()),
            members: registry.len(),
        })
    }

    fn deregister(&self, body: Deregister) -> Reply {
        let removed = self.locked_registry().remove(&body.name).is_some();
        if removed {
            self.count(|e| e.deregistered += 1);
            log::info!("{} deregistered", body.name);
        }
        Reply::ok(&Deregistered { removed })
    }
}

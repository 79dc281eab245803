//! The node's side of discovery: a background thread that registers this node, then
//! every interval heartbeats (an upsert, so a restarted server refills itself) and
//! fetches the peer list, handing each fresh list to the node through a callback.
//!
//! Discovery is a convenience, never a dependency: requests have short timeouts, an
//! unreachable server is logged once when it goes and once when it comes back, and the
//! last list stays available meanwhile. Also the one-shot lookups the CLI needs
//! (`fetch_peers`, `resolve` for `--node NAME`).

use super::api::{Deregister, Member, NodeInfo, Registered};
use crate::http::{Credentials, HttpError, JsonClient, Timeouts};
use crate::status::millis;
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a node heartbeats and refreshes its peers unless configured otherwise;
/// well below the server's default TTL of 5 s, so a few lost heartbeats are tolerated.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest any single request to discovery may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How messages name the server.
const WHAT: &str = "the discovery server";

/// What a `DiscoveryClient` needs to know.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The discovery server, e.g. `http://127.0.0.1:8000` (the scheme may be left out).
    pub url: String,
    /// This node, as registered.
    pub me: NodeInfo,
    /// Time between heartbeats (each also refreshes the peer list).
    pub interval: Duration,
    /// Timeout of each request.
    pub timeout: Duration,
    /// The API token (and TLS roots) discovery needs, if any.
    pub credentials: Credentials,
}

impl ClientConfig {
    /// A config with the default interval and timeout.
    pub fn new(url: &str, me: NodeInfo) -> ClientConfig {
        ClientConfig {
            url: url.to_owned(),
            me,
            interval: DEFAULT_HEARTBEAT_INTERVAL,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            credentials: Credentials::default(),
        }
    }
}

/// Why a call to discovery failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryError {
    /// No answer, an error status, or a bad answer.
    Http(HttpError),
    /// `resolve` found no member with that name; `known` lists the names it did find.
    UnknownNode { name: String, known: Vec<String> },
}

impl From<HttpError> for DiscoveryError {
    fn from(e: HttpError) -> DiscoveryError {
        DiscoveryError::Http(e)
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Http(e) => e.fmt(f),
            DiscoveryError::UnknownNode { name, known } if known.is_empty() => {
                write!(f, "no node named {name:?}: no nodes are registered")
            }
            DiscoveryError::UnknownNode { name, known } => write!(
                f,
                "no node named {name:?}; known nodes: {}",
                known.join(", ")
            ),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// Registers this node and keeps its peer list fresh on a thread of its own, until
/// `stop` (or drop), which deregisters it.
pub struct DiscoveryClient {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    last: Arc<Mutex<Vec<Member>>>,
}

impl DiscoveryClient {
    /// Starts the client thread. `on_peers` gets every freshly fetched list of the other
    /// members (this node left out), once per interval while discovery answers.
    pub fn start(
        config: ClientConfig,
        on_peers: impl FnMut(Vec<Member>) + Send + 'static,
    ) -> std::io::Result<DiscoveryClient> {
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let last = Arc::new(Mutex::new(Vec::new()));
        let mut worker = Worker {
            client: client(&config.url, config.timeout, &config.credentials),
            me: config.me,
            interval: config.interval,
            on_peers: Box::new(on_peers),
            last: last.clone(),
            reachable: None,
            registered: false,
            warned_ttl: false,
        };
        let thread = thread::Builder::new()
            .name("discovery-client".into())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    worker.tick();
                    next += worker.interval;
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    match stop_rx.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                worker.deregister();
            })?;
        Ok(DiscoveryClient {
            stop: Some(stop_tx),
            thread: Some(thread),
            last,
        })
    }

    /// The last list of other members fetched (empty until the first answer); kept as
    /// it was while discovery is unreachable.
    pub fn peers(&self) -> Vec<Member> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Deregisters this node and waits for the client thread to finish: at once when
    /// discovery answers, at worst three request timeouts when it hangs (a tick's two
    /// requests in flight, then the deregistration).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DiscoveryClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type PeersCallback = Box<dyn FnMut(Vec<Member>) + Send>;

struct Worker {
    client: JsonClient,
    me: NodeInfo,
    interval: Duration,
    on_peers: PeersCallback,
    last: Arc<Mutex<Vec<Member>>>,
    /// None before the first attempt; logged only when it changes.
    reachable: Option<bool>,
    registered: bool,
    warned_ttl: bool,
}

impl Worker {
    fn tick(&mut self) {
        match self.upsert_and_fetch() {
            Ok(peers) => {
                match self.reachable {
                    Some(false) => {
                        log::info!("discovery at {} is reachable again", self.client.base())
                    }
                    None => log::info!(
                        "registered as {} with discovery at {}",
                        self.me.name,
                        self.client.base()
                    ),
                    Some(true) => {}
                }
                self.reachable = Some(true);
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = peers.clone();
                (self.on_peers)(peers);
            }
            Err(e) => {
                if self.reachable != Some(false) {
                    let known = self.last.lock().unwrap_or_else(|p| p.into_inner()).len();
                    let hint = credentials_hint(&e);
                    log::warn!("{e}{hint}; carrying on with the {known} peers known");
                }
                self.reachable = Some(false);
            }
        }
    }

    fn upsert_and_fetch(&mut self) -> Result<Vec<Member>, DiscoveryError> {
        let route = if self.registered {
            "/heartbeat"
        } else {
            "/register"
        };
        let answer: Registered = self.client.post_json(route, &self.me)?;
        self.registered = true;
        if !self.warned_ttl && millis(self.interval) >= answer.ttl_ms {
            log::warn!(
                "heartbeat interval {} is not below discovery's TTL of {} ms; this node will flicker in and out",
                humantime::format_duration(self.interval),
                answer.ttl_ms
            );
            self.warned_ttl = true;
        }
        let mut peers: Vec<Member> = self.client.get("/peers")?;
        peers.retain(|m| m.name != self.me.name);
        Ok(peers)
    }

    fn deregister(&self) {
        let body = Deregister {
            name: self.me.name.clone(),
        };
        match self
            .client
            .post_json::<_, serde_json::Value>("/deregister", &body)
        {
            Ok(_) => log::info!("deregistered {} from discovery", self.me.name),
            Err(e) => log::debug!("deregistering {} failed: {e}", self.me.name),
        }
    }
}

/// What to do when discovery refused this node's credentials.
fn credentials_hint(e: &DiscoveryError) -> &'static str {
    match e {
        DiscoveryError::Http(HttpError::Refused { status: 401, .. }) => {
            " (give this node discovery's token with --discovery-token-file)"
        }
        DiscoveryError::Http(HttpError::Refused { status: 403, .. }) => {
            " (registering needs a read-write token)"
        }
        _ => "",
    }
}

/// Every live member discovery knows, sorted by name.
pub fn fetch_peers(url: &str, credentials: &Credentials) -> Result<Vec<Member>, DiscoveryError> {
    Ok(client(url, DEFAULT_REQUEST_TIMEOUT * 2, credentials).get("/peers")?)
}

/// The HTTP address of the node named `name`, looked up in discovery.
pub fn resolve(
    url: &str,
    name: &str,
    credentials: &Credentials,
) -> Result<SocketAddr, DiscoveryError> {
    let peers = fetch_peers(url, credentials)?;
    match peers.iter().find(|m| m.name == name) {
        Some(member) => Ok(member.http),
        None => Err(DiscoveryError::UnknownNode {
            name: name.to_owned(),
            known: peers.into_iter().map(|m| m.name).collect(),
        }),
    }
}

fn client(url: &str, timeout: Duration, credentials: &Credentials) -> JsonClient {
    let timeouts = Timeouts {
        connect: timeout,
        total: timeout,
    };
    JsonClient::new(url, WHAT, timeouts, credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_node_error_lists_the_known_names() {
        let e = DiscoveryError::UnknownNode {
            name: "9".into(),
            known: vec!["1".into(), "2".into()],
        };
        assert_eq!(e.to_string(), "no node named \"9\"; known nodes: 1, 2");
        let none = DiscoveryError::UnknownNode {
            name: "9".into(),
            known: vec![],
        };
        assert!(none.to_string().contains("no nodes are registered"));
    }
}

//! The node's side of discovery: a background thread that registers this node, then
//! every interval heartbeats (an upsert, so a restarted server refills itself) and
//! fetches the peer list, handing each fresh list to the node through a callback.
//!
//! Discovery is a convenience, never a dependency: requests have short timeouts, an
//! unreachable server is logged once when it goes and once when it comes back, and the
//! last list stays available meanwhile. Also the one-shot lookups the CLI needs
//! (`fetch_peers`, `resolve` for `--node NAME`).

use super::api::{Deregister, ErrorBody, Member, NodeInfo, Registered};
use super::registry::millis;
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a node heartbeats and refreshes its peers unless configured otherwise;
/// well below the server's default TTL of 5 s, so a few lost heartbeats are tolerated.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest any single request to discovery may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest answer read from discovery (a full table of 10,000 members is about 1 MB).
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

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
}

impl ClientConfig {
    /// A config with the default interval and timeout.
    pub fn new(url: &str, me: NodeInfo) -> ClientConfig {
        ClientConfig {
            url: url.to_owned(),
            me,
            interval: DEFAULT_HEARTBEAT_INTERVAL,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Why a call to discovery failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryError {
    /// No answer: connection refused, timed out, bad URL.
    Unreachable { url: String, reason: String },
    /// The server answered with an error status.
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// The server answered something that is not the expected JSON.
    BadAnswer { url: String, reason: String },
    /// `resolve` found no member with that name; `known` lists the names it did find.
    UnknownNode { name: String, known: Vec<String> },
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Unreachable { url, reason } => {
                write!(f, "cannot reach the discovery server at {url}: {reason}")
            }
            DiscoveryError::Refused {
                url,
                status,
                message,
            } => write!(f, "discovery server at {url} answered {status}: {message}"),
            DiscoveryError::BadAnswer { url, reason } => {
                write!(f, "discovery server at {url} sent a bad answer: {reason}")
            }
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
            url: base_url(&config.url),
            agent: agent(config.timeout),
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
    url: String,
    agent: ureq::Agent,
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
                    Some(false) => log::info!("discovery at {} is reachable again", self.url),
                    None => log::info!(
                        "registered as {} with discovery at {}",
                        self.me.name,
                        self.url
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
                    log::warn!("{e}; carrying on with the {known} peers known");
                }
                self.reachable = Some(false);
            }
        }
    }

    fn upsert_and_fetch(&mut self) -> Result<Vec<Member>, DiscoveryError> {
        let route = if self.registered {
            "heartbeat"
        } else {
            "register"
        };
        let answer: Registered = post(&self.agent, &self.url, route, &self.me)?;
        self.registered = true;
        if !self.warned_ttl && millis(self.interval) >= answer.ttl_ms {
            log::warn!(
                "heartbeat interval {} is not below discovery's TTL of {} ms; this node will flicker in and out",
                humantime::format_duration(self.interval),
                answer.ttl_ms
            );
            self.warned_ttl = true;
        }
        let mut peers = get_peers(&self.agent, &self.url)?;
        peers.retain(|m| m.name != self.me.name);
        Ok(peers)
    }

    fn deregister(&self) {
        let body = Deregister {
            name: self.me.name.clone(),
        };
        match post::<_, serde_json::Value>(&self.agent, &self.url, "deregister", &body) {
            Ok(_) => log::info!("deregistered {} from discovery", self.me.name),
            Err(e) => log::debug!("deregistering {} failed: {e}", self.me.name),
        }
    }
}

/// Every live member discovery knows, sorted by name.
pub fn fetch_peers(url: &str) -> Result<Vec<Member>, DiscoveryError> {
    get_peers(&agent(DEFAULT_REQUEST_TIMEOUT * 2), &base_url(url))
}

/// The HTTP address of the node named `name`, looked up in discovery.
pub fn resolve(url: &str, name: &str) -> Result<SocketAddr, DiscoveryError> {
    let peers = fetch_peers(url)?;
    match peers.iter().find(|m| m.name == name) {
        Some(member) => Ok(member.http),
        None => Err(DiscoveryError::UnknownNode {
            name: name.to_owned(),
            known: peers.into_iter().map(|m| m.name).collect(),
        }),
    }
}

/// `url` with a scheme and without a trailing slash.
fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout(timeout)
        .build()
}

fn get_peers(agent: &ureq::Agent, url: &str) -> Result<Vec<Member>, DiscoveryError> {
    answer(url, agent.get(&format!("{url}/peers")).call())
}

fn post<B: Serialize, T: DeserializeOwned>(
    agent: &ureq::Agent,
    url: &str,
    route: &str,
    body: &B,
) -> Result<T, DiscoveryError> {
    answer(url, agent.post(&format!("{url}/{route}")).send_json(body))
}

fn answer<T: DeserializeOwned>(
    url: &str,
    result: Result<ureq::Response, ureq::Error>,
) -> Result<T, DiscoveryError> {
    match result {
        Ok(response) => read_json(response).map_err(|reason| DiscoveryError::BadAnswer {
            url: url.to_owned(),
            reason,
        }),
        Err(ureq::Error::Status(status, response)) => Err(DiscoveryError::Refused {
            url: url.to_owned(),
            status,
            message: read_json::<ErrorBody>(response)
                .map(|e| e.error)
                .unwrap_or_else(|_| "no error message".into()),
        }),
        Err(e) => Err(DiscoveryError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn read_json<T: DeserializeOwned>(response: ureq::Response) -> Result<T, String> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_ANSWER_BYTES {
        return Err(format!("answer is over {MAX_ANSWER_BYTES} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_adds_a_scheme_and_drops_trailing_slashes() {
        assert_eq!(base_url("127.0.0.1:8000"), "http://127.0.0.1:8000");
        assert_eq!(base_url("http://h:1/"), "http://h:1");
        assert_eq!(base_url(" https://h:1 "), "https://h:1");
    }

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

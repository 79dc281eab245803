//! The TCP node: the runtime that carries the I/O-free node core onto real sockets.
//!
//! - `config`: settings and defaults;
//! - `wal_storage`: the node core's `Storage` over the write-ahead log (`--wal`);
//! - `wal_thread`: the thread that writes, fsyncs and snapshots that log, off the event
//!   loop;
//! - `event_loop`: the one thread that owns the node core and routes its effects;
//! - `transport`: outbound connections to gossip addresses (writer threads, bounded
//!   queues): the reliable lane;
//! - `listener`: inbound gossip connections (reader threads, limits);
//! - `probe_lane`: membership probes as UDP datagrams on the gossip port;
//! - `seeds`: `--seeds` resolved (and re-resolved) to addresses;
//! - `lan_discovery`: nodes of one cluster finding each other by UDP broadcast;
//! - `discovery_feed`: addresses to join from the discovery server;
//! - `http_api` and `views`: the HTTP API (with the dashboard and metrics) and its JSON
//!   shapes; `oneshot`: how an HTTP increment waits for its answer.
//!
//! - `keyed_stream`: the keyed handshake and sealed frames on gossip connections;
//! - `node_keys`: the keyring at run time (`--keyring`): its file, the probe lane's
//!   sealed datagrams, the cluster keyring's messages.
//!
//! With `redis_addr` set, the RESP server (`crate::resp`) is started beside the HTTP
//! API, on the same channels to the event loop.
//!
//! [`Node::start`] takes a storage plus the origin and state it recovered, so a
//! durable storage plugs in without touching the rest.

pub(crate) mod config;
pub(crate) mod discovery_feed;
pub(crate) mod event_loop;
pub(crate) mod http_api;
pub(crate) mod keyed_stream;
pub(crate) mod lan_discovery;
pub(crate) mod listener;
pub(crate) mod node_keys;
pub(crate) mod oneshot;
pub(crate) mod probe_lane;
pub(crate) mod seeds;
pub(crate) mod transport;
pub(crate) mod views;
pub(crate) mod wal_storage;
pub(crate) mod wal_thread;

pub use config::{KeyringConfig, NodeConfig};
pub use event_loop::Control;
pub use wal_storage::WalStorage;

use crate::codec::Frame;
use crate::crdt::{Origin, State};
use crate::engine::Engine;
use crate::http::Access;
use crate::http::HttpServer;
use crate::keyring::cluster::{ClusterKeys, Record};
use crate::keyring::shared::SharedKeyring;
use crate::member::{Member, NodeName};
use crate::membership::Membership;
use crate::node_core::{KeyStart, NodeCore, Storage};
use crate::resp::{self, NodeLink, RespServer};
use crate::status::histogram::{Histogram, DURATION_BUCKETS};
use crossbeam_channel::Sender;
use event_loop::{ClientOps, EventLoop, Inputs, OpReply, Query, SharedFigures};
use lan_discovery::LanDiscovery;
use listener::Inbound;
use listener::{GossipListener, InboundCounters, ListenerConfig};
use node_keys::NodeKeys;
use probe_lane::Datagram;
use probe_lane::ProbeLane;
use seeds::SeedResolver;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use transport::LinkConfig;

/// Inbound frames waiting for the event loop; readers wait when it is full.
const INBOUND_QUEUE: usize = 1024;
/// Probe datagrams waiting for the event loop; more are dropped, as the network may.
const DATAGRAM_QUEUE: usize = 1024;

/// A fresh origin for a node that has no durable state: a new random incarnation.
pub fn fresh_origin(name: &str) -> Origin {
    Origin::new(name, fastrand::u64(..))
}

/// A running node. [`Node::stop`] stops it cleanly.
pub struct Node {
    me: Member,
    gossip_addr: SocketAddr,
    http_addr: SocketAddr,
    control: Sender<Control>,
    shutdown: Sender<()>,
    http: HttpServer,
    redis: Option<RespServer>,
    listener: GossipListener,
    seeds: SeedResolver,
    lan: Option<LanDiscovery>,
    event_loop: JoinHandle<()>,
}

impl Node {
    /// Binds the gossip and HTTP addresses and starts every thread. `origin` and `state`
    /// are what `storage` recovered (a fresh origin and an empty state without one).
    pub fn start(
        config: NodeConfig,
        storage: Box<dyn Storage>,
        origin: Origin,
        state: State,
    ) -> io::Result<Node> {
        let start = Instant::now();
        let Bound {
            gossip_listener,
            http_listener,
            redis_listener,
            gossip_bound,
            gossip_addr,
            http_addr,
            me,
        } = bind_all(&config, &origin)?;

        let keys = load_keys(&config, &me.name)?;
        let shared = keys.as_ref().map(|(_, shared)| shared.clone());
        let (tx, inputs) = channels();
        let counters = Arc::new(InboundCounters::default());
        let probes = ProbeLane::bind(gossip_bound, tx.datagrams)?;
        let op_durations = Histogram::new(DURATION_BUCKETS);
        let event_loop = EventLoop::new(
            core(&config, storage, origin, state, &me, start.elapsed()),
            me.clone(),
            link_config(&config, &me, shared.clone()),
            probes,
            inputs,
            SharedFigures {
                inbound_counters: counters.clone(),
                op_durations: op_durations.clone(),
                access: config.http.access.clone(),
            },
            start,
        )
        .with_keys(keys.map(|(keys, _)| keys));
        let event_loop = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || event_loop.run())?;
        let seeds = SeedResolver::spawn(config.seeds.clone(), tx.control.clone())?;
        let lan = config
            .lan
            .clone()
            .map(|lan| LanDiscovery::spawn(lan, me.gossip_addr.clone(), tx.control.clone()))
            .transpose()?;

        let listener = GossipListener::spawn(
            gossip_listener,
            listener_config(&config, shared),
            tx.inbound,
            counters,
        )?;
        let http = http_api::spawn(
            http_listener,
            &config.http,
            tx.ops.clone(),
            tx.queries.clone(),
            op_durations,
        )?;
        let redis = match redis_listener {
            Some(listener) => Some(spawn_redis(
                listener,
                NodeLink {
                    ops: tx.ops,
                    queries: tx.queries,
                },
                config.http.access.clone(),
            )?),
            None => None,
        };
        Ok(Node {
            me,
            gossip_addr,
            http_addr,
            control: tx.control,
            shutdown: tx.shutdown,
            http,
            redis,
            listener,
            seeds,
            lan,
            event_loop,
        })
    }

    /// This run's identity and addresses.
    pub fn member(&self) -> &Member {
        &self.me
    }

    pub fn name(&self) -> &str {
        self.me.name.as_str()
    }

    /// The origin this run writes under.
    pub fn origin(&self) -> Origin {
        self.me.origin()
    }

    /// The gossip address peers reach this node at (the advertised one, if any).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// The HTTP address clients reach this node at (the advertised one, if any).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where Redis clients connect, when the node serves them.
    pub fn redis_addr(&self) -> Option<SocketAddr> {
        self.redis.as_ref().map(RespServer::local_addr)
    }

    /// Where a membership source sends [`Control::Discovered`] addresses.
    pub fn control(&self) -> Sender<Control> {
        self.control.clone()
    }

    /// Stops cleanly: no new requests (those in progress, HTTP or Redis, are answered),
    /// then the event loop announces the leave to the members, stops and closes the
    /// storage, then inbound connections are closed. Outbound connections close as their
    /// writers see their links dropped.
    pub fn stop(mut self) {
        self.http.stop();
        if let Some(redis) = &mut self.redis {
            redis.stop();
        }
        drop(self.seeds);
        drop(self.lan);
        let _ = self.shutdown.send(());
        if self.event_loop.join().is_err() {
            log::error!("the event loop panicked");
        }
        self.listener.stop();
        log::info!("node {} stopped", self.me.name);
    }
}

/// The limits on inbound gossip connections, and the keyring they are checked with.
fn listener_config(config: &NodeConfig, keyring: Option<SharedKeyring>) -> ListenerConfig {
    ListenerConfig {
        max_inbound: config.max_inbound,
        hello_timeout: config.hello_timeout,
        idle_timeout: config.idle_timeout,
        max_payload: config.engine.max_payload,
        keyring,
    }
}

/// Reads the keyring file, if the node has one: the event loop's keyring and the shared
/// view the gossip threads consult.
fn load_keys(config: &NodeConfig, me: &NodeName) -> io::Result<Option<(NodeKeys, SharedKeyring)>> {
    let Some(k) = &config.keyring else {
        return Ok(None);
    };
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let text = std::fs::read_to_string(&k.file)
        .map_err(|e| invalid(format!("cannot read the keyring {}: {e}", k.file.display())))?;
    let record = Record::from_file_text(&text, me, k.transition)
        .map_err(|e| invalid(format!("keyring {}: {e}", k.file.display())))?;
    let cluster = ClusterKeys::new(me.clone(), record);
    let shared = SharedKeyring::new(cluster.active());
    log::info!(
        "keyring {}: mode {}, primary key {}, version {}",
        k.file.display(),
        cluster.mode().name(),
        cluster.record().keyring.primary().id(),
        cluster.record().version
    );
    let keys = NodeKeys::new(cluster, shared.clone(), k.file.clone())?;
    Ok(Some((keys, shared)))
}

/// This run of the node: its name and origin, started now, reached at these addresses.
fn this_run(origin: &Origin, gossip: SocketAddr, http: SocketAddr) -> io::Result<Member> {
    Ok(Member {
        name: NodeName::new(&origin.node)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        incarnation: origin.incarnation,
        started_at: wall_clock_millis(),
        gossip_addr: gossip.to_string(),
        http_addr: http.to_string(),
    })
}

/// The sending ends of the event loop's inputs.
struct Senders {
    inbound: Sender<Inbound>,
    datagrams: Sender<Datagram>,
    ops: Sender<ClientOps>,
    queries: Sender<Query>,
    control: Sender<Control>,
    shutdown: Sender<()>,
}

/// The event loop's input channels: the ends the other threads send on, and its own.
fn channels() -> (Senders, Inputs) {
    let (inbound, inbound_rx) = crossbeam_channel::bounded(INBOUND_QUEUE);
    let (datagrams, datagrams_rx) = crossbeam_channel::bounded(DATAGRAM_QUEUE);
    let (ops, ops_rx) = crossbeam_channel::unbounded();
    let (queries, queries_rx) = crossbeam_channel::unbounded();
    let (control, control_rx) = crossbeam_channel::unbounded();
    let (shutdown, shutdown_rx) = crossbeam_channel::bounded(1);
    let inputs = Inputs {
        inbound: inbound_rx,
        datagrams: datagrams_rx,
        ops: ops_rx,
        queries: queries_rx,
        control: control_rx,
        control_tx: control.clone(),
        shutdown: shutdown_rx,
    };
    let senders = Senders {
        inbound,
        datagrams,
        ops,
        queries,
        control,
        shutdown,
    };
    (senders, inputs)
}

/// The node's listening sockets, and the addresses and identity it tells peers.
struct Bound {
    gossip_listener: TcpListener,
    http_listener: TcpListener,
    redis_listener: Option<TcpListener>,
    gossip_bound: SocketAddr,
    gossip_addr: SocketAddr,
    http_addr: SocketAddr,
    me: Member,
}

/// Binds every listener and makes this run's member entry (with `--advertise`, peers
/// are told that IP with the bound ports).
fn bind_all(config: &NodeConfig, origin: &Origin) -> io::Result<Bound> {
    let gossip_listener = bind(config.gossip_addr, "gossip")?;
    let http_listener = bind(config.http_addr, "HTTP")?;
    let redis_listener = config
        .redis_addr
        .map(|addr| bind(addr, "Redis clients"))
        .transpose()?;
    let gossip_bound = gossip_listener.local_addr()?;
    let http_bound = http_listener.local_addr()?;
    let advertised = |bound: SocketAddr| match config.advertise {
        Some(ip) => SocketAddr::new(ip, bound.port()),
        None => bound,
    };
    let (gossip_addr, http_addr) = (advertised(gossip_bound), advertised(http_bound));
    let me = this_run(origin, gossip_addr, http_addr)?;
    log::info!(
        "node {} ({}) gossip on {gossip_bound}, HTTP on {http_bound}{}, {} seed(s)",
        me.name,
        me.origin(),
        config
            .advertise
            .map_or_else(String::new, |ip| format!(", advertised as {ip}")),
        config.seeds.len()
    );
    Ok(Bound {
        gossip_listener,
        http_listener,
        redis_listener,
        gossip_bound,
        gossip_addr,
        http_addr,
        me,
    })
}

/// The node core over what the storage recovered, with membership starting from `me`.
fn core(
    config: &NodeConfig,
    storage: Box<dyn Storage>,
    origin: Origin,
    mut state: State,
    me: &Member,
    now: std::time::Duration,
) -> NodeCore<OpReply> {
    state.set_counter_limit(config.max_counters);
    state.set_key_limit(config.max_keys);
    // A node that can find members catches up with one before it takes keys, even with
    // state of its own (keys may have been accepted elsewhere since it was written).
    let key_start = if config.finds_members() {
        KeyStart::Joining
    } else if state.origin_count() > 0 {
        KeyStart::Recovered
    } else {
        KeyStart::Alone
    };
    let engine = Engine::new(origin, config.engine.clone(), state, fastrand::u64(..), now);
    let membership = Membership::new(
        me.clone(),
        config.membership.clone(),
        Vec::new(),
        fastrand::u64(..),
        now,
    );
    let mut core = NodeCore::new(engine, storage)
        .with_membership(membership)
        .with_keys(config.key_window, wall_epoch_ms(now), key_start)
        .with_retirement(config.retire_after)
        .with_compaction(config.compact_after);
    if let Some(timeout) = config.fence {
        core.fence(now, timeout);
    }
    core
}

/// The RESP server on `listener`, on the same channels to the event loop as HTTP.
fn spawn_redis(listener: TcpListener, link: NodeLink, access: Access) -> io::Result<RespServer> {
    let server = RespServer::spawn(listener, resp::Config::default(), link, access)?;
    log::info!("Redis protocol (RESP2) on {}", server.local_addr());
    Ok(server)
}

/// The wall clock, in milliseconds since the Unix epoch, at the event loop's time zero
/// (`now` after it).
fn wall_epoch_ms(now: std::time::Duration) -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    wall.saturating_sub(now).as_millis() as u64
}

/// Milliseconds since the Unix epoch: when this run started, which orders it after
/// every earlier run of the same name.
fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What every outbound link needs: limits, the Hello that announces this node, and the
/// keyring.
fn link_config(config: &NodeConfig, me: &Member, keyring: Option<SharedKeyring>) -> LinkConfig {
    LinkConfig {
        queue: config.peer_queue,
        io_timeout: config.io_timeout,
        max_backoff: config.max_backoff,
        hello: Frame::Hello {
            name: me.name.clone(),
            gossip_addr: me.gossip_addr.clone(),
            http_addr: me.http_addr.clone(),
        },
        keyring,
    }
}

fn bind(addr: SocketAddr, what: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}")))
}

//! The TCP node: the runtime that carries the I/O-free engine onto real sockets.
//!
//! - `config`: settings and defaults;
//! - `storage`: the `Storage` trait through which changes become durable;
//! - `wal_storage`: that trait over the write-ahead log (`--wal`);
//! - `event_loop`: the one thread that owns the engine and routes its outputs;
//! - `transport`: outbound peer connections (writer threads, bounded queues);
//! - `listener`: inbound gossip connections (reader threads, limits);
//! - `peers`: the node's peer table;
//! - `discovery_feed`: membership from the discovery server;
//! - `http_api` and `views`: the HTTP API and its JSON shapes.
//!
//! With `redis_addr` set, the RESP server (`crate::resp`) is started beside the HTTP
//! API, on the same channels to the event loop.
//!
//! [`Node::start`] takes a storage plus the origin and state it recovered, so a
//! durable storage plugs in without touching the rest.

pub mod config;
pub mod discovery_feed;
pub mod event_loop;
pub mod http_api;
pub mod listener;
pub mod peers;
pub mod storage;
pub mod transport;
pub mod views;
pub mod wal_storage;

pub use config::NodeConfig;
pub use event_loop::Control;
pub use peers::PeerInfo;
pub use storage::{MemoryStorage, Storage};
pub use wal_storage::WalStorage;

use crate::codec::Frame;
use crate::crdt::{Origin, State};
use crate::engine::Engine;
use crate::resp::{self, NodeLink, RespServer};
use crossbeam_channel::Sender;
use event_loop::{EventLoop, Inputs};
use http_api::HttpApi;
use listener::{GossipListener, InboundStats, ListenerSettings};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use transport::LinkSettings;
use views::SelfView;

/// Inbound frames waiting for the event loop; readers wait when it is full.
const INBOUND_QUEUE: usize = 1024;

/// A fresh origin for a node that has no durable state: a new random incarnation.
pub fn fresh_origin(name: &str) -> Origin {
    Origin::new(name, fastrand::u64(..))
}

/// A running node. [`Node::stop`] stops it cleanly.
pub struct Node {
    me: SelfView,
    gossip_addr: SocketAddr,
    http_addr: SocketAddr,
    control: Sender<Control>,
    http: HttpApi,
    redis: Option<RespServer>,
    listener: GossipListener,
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
        let gossip_listener = TcpListener::bind(config.gossip_addr)
            .map_err(|e| annotate(e, "gossip", config.gossip_addr))?;
        let http_listener = TcpListener::bind(config.http_addr)
            .map_err(|e| annotate(e, "HTTP", config.http_addr))?;
        let gossip_addr = gossip_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let redis_listener = match config.redis_addr {
            Some(addr) => {
                Some(TcpListener::bind(addr).map_err(|e| annotate(e, "Redis clients", addr))?)
            }
            None => None,
        };
        let me = SelfView {
            name: config.name.clone(),
            origin: origin.to_string(),
            gossip_addr: gossip_addr.to_string(),
            http_addr: http_addr.to_string(),
        };

        log::info!(
            "node {} ({}) gossip on {gossip_addr}, HTTP on {http_addr}, {} seed(s)",
            me.name,
            me.origin,
            config.seeds.len()
        );

        let (inbound_tx, inbound_rx) = crossbeam_channel::bounded(INBOUND_QUEUE);
        let (ops_tx, ops_rx) = crossbeam_channel::unbounded();
        let (queries_tx, queries_rx) = crossbeam_channel::unbounded();
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let inbound_stats = Arc::new(InboundStats::default());

        let engine = Engine::new(
            origin,
            config.engine.clone(),
            state,
            fastrand::u64(..),
            start.elapsed(),
        );
        let link_settings = LinkSettings {
            queue: config.peer_queue,
            io_timeout: config.io_timeout,
            max_backoff: config.max_backoff,
            hello: Frame::Hello {
                name: me.name.clone(),
                gossip_addr: me.gossip_addr.clone(),
                http_addr: me.http_addr.clone(),
            },
        };
        let inputs = Inputs {
            inbound: inbound_rx,
            ops: ops_rx,
            queries: queries_rx,
            control: control_rx,
            control_tx: control_tx.clone(),
        };
        let mut event_loop = EventLoop::new(
            engine,
            storage,
            me.clone(),
            link_settings,
            inputs,
            inbound_stats.clone(),
            start,
        );
        event_loop.add_seeds(&config.seeds);
        let event_loop = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || event_loop.run())?;

        let listener = GossipListener::spawn(
            gossip_listener,
            ListenerSettings {
                max_inbound: config.max_inbound,
                hello_timeout: config.hello_timeout,
                idle_timeout: config.idle_timeout,
                max_payload: config.engine.max_payload,
            },
            inbound_tx,
            inbound_stats,
        )?;
        let http = HttpApi::spawn(
            http_listener,
            config.http_workers,
            config.http_read_timeout,
            config.max_body,
            ops_tx.clone(),
            queries_tx.clone(),
        )?;
        let redis = match redis_listener {
            Some(listener) => {
                let link = NodeLink {
                    ops: ops_tx,
                    queries: queries_tx,
                };
                let server = RespServer::spawn(listener, resp::Settings::default(), link)?;
                log::info!("Redis protocol (RESP2) on {}", server.local_addr());
                Some(server)
            }
            None => None,
        };
        Ok(Node {
            me,
            gossip_addr,
            http_addr,
            control: control_tx,
            http,
            redis,
            listener,
            event_loop,
        })
    }

    pub fn name(&self) -> &str {
        &self.me.name
    }

    /// The origin this run writes under, as `node/incarnation`.
    pub fn origin(&self) -> &str {
        &self.me.origin
    }

    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where Redis clients connect, when the node serves them.
    pub fn redis_addr(&self) -> Option<SocketAddr> {
        self.redis.as_ref().map(RespServer::local_addr)
    }

    /// Where a membership source sends [`Control::Membership`] lists.
    pub fn control(&self) -> Sender<Control> {
        self.control.clone()
    }

    /// Stops cleanly: no new requests (those in progress, HTTP or Redis, are answered),
    /// then the event loop stops and closes the storage, then inbound connections are
    /// closed. Outbound connections close as their writers see their links dropped.
    pub fn stop(mut self) {
        self.http.stop();
        if let Some(redis) = &mut self.redis {
            redis.stop();
        }
        let _ = self.control.send(Control::Shutdown);
        if self.event_loop.join().is_err() {
            log::error!("the event loop panicked");
        }
        self.listener.stop();
        log::info!("node {} stopped", self.me.name);
    }
}

fn annotate(e: io::Error, what: &str, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"))
}

//! Discovery: the `gctr discovery` server and the node's client for it.
//!
//! `api` holds the JSON shapes both sides speak, `registry` the member table with its
//! TTL (pure, time passed in), `server` the HTTP front of that table, and `client` what
//! a node runs to register, heartbeat and learn its peers.

pub(crate) mod api;
pub(crate) mod client;
pub(crate) mod registry;
pub(crate) mod server;

pub use api::{Member, NodeInfo};
pub use client::{fetch_peers, resolve, ClientConfig, DiscoveryClient, DiscoveryError};
pub use registry::Registry;
pub use server::{DiscoveryServer, ServerConfig};

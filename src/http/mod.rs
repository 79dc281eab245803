//! HTTP, written once for every part of gctr that speaks it.
//!
//! - `server`: the worker pool, limits, request and reply shapes used by the node API and
//!   discovery;
//! - `access`: the API tokens every server checks before a route sees a request;
//! - `tls`: certificates, keys and trust roots for HTTPS (rustls);
//! - `client`: the JSON client used by the CLI and the node's discovery client.

pub mod access;
pub(crate) mod client;
pub(crate) mod server;
pub mod tls;

pub use access::{Access, ApiTokens};
pub use client::{Credentials, HttpError, JsonClient, Timeouts};
pub use server::{Handler, HttpConfig, HttpServer, Reply, Request};
pub use tls::ServerTls;

/// The `{"error": "..."}` body of every error answer, sent by the server and read by the
/// client.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

//! The Redis protocol (RESP2) front end: `gctr node --redis HOST:PORT` lets redis-cli,
//! redis-benchmark and Redis client libraries use gctr counters with `INCR`, `INCRBY`,
//! `DECR`, `DECRBY`, `GET`, `MGET` and `EXISTS`, plus the connection commands clients
//! send on their own.
//!
//! It feeds the node through the same channels as the HTTP API, so a reply to an
//! increment is sent only once its batch is durable and applied.
//!
//! - `parser`: where bytes become requests (incremental, bounded, inline commands too);
//! - `command`: the command table and the checks that turn a request into a command;
//! - `session`: one connection's state and its pipeline, run against the node in order;
//! - `auth`: API tokens (`AUTH`) and what a connection's token lets it do;
//! - `about`: what the server says about itself (`COMMAND`, `HELLO`, `INFO`, `CONFIG`);
//! - `reply`: RESP2 reply encoding;
//! - `server`: the listener and the event loops that serve the connections.

pub mod about;
pub mod auth;
pub mod command;
pub mod parser;
pub mod reply;
pub mod server;
pub mod session;

#[cfg(test)]
mod tests;

pub use server::{Config, RespServer};
pub use session::NodeLink;

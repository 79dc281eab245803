//! gctr: an AP distributed counter. A PN-counter CRDT replicated by gossip over TCP,
//! with a write-ahead log that keeps every acknowledged write through a crash.
//!
//! The protocol core (`crdt`, `codec`, `engine`) is free of I/O; the runtimes around it
//! (the TCP node, the Maelstrom runtime, the tests' simulator) feed it inputs and carry
//! out its outputs.

pub mod cli;
pub mod codec;
pub mod crdt;
pub mod discovery;
pub mod engine;
pub mod http;
pub mod keyring;
pub(crate) mod logging;
pub(crate) mod maelstrom;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod node_core;
pub mod push;
pub mod replication;
pub mod resp;
pub mod status;
pub mod summary;
pub mod wal;

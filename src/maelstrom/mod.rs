//! The Maelstrom runtime: the one gossip engine driven over Maelstrom's protocol, JSON
//! messages one per line on stdin and stdout, logs on stderr.
//!
//! - `message`: where a line becomes a request (or an error to answer) and replies become JSON;
//! - `node`: the I/O-free handler: one Maelstrom node around an [`crate::engine::Engine`];
//! - `lines`: reading stdin line by line with a bound on a line's length;
//! - `runtime`: the threads, the clock and the event loop.
//!
//! Choices this runtime makes, and why:
//!
//! - Origins are `(node id, incarnation 0)`. A fixed incarnation lets a `replicate`
//!   message, which names nodes but not incarnations, merge into the very entries that
//!   node's own gossip fills, so max-merge never counts one node's adds twice. It is safe
//!   because a Maelstrom node keeps its state for the whole run: the pn-counter workload
//!   faults the network (partitions), not the processes. A node process restarted without
//!   its state would reuse its origin and have its new adds swallowed by the max-merge of
//!   its old totals, so this runtime is not for setups that restart nodes.
//! - Peers are all the other node ids from `init`. The `topology` message is answered and
//!   otherwise ignored: the engine's rounds take `fanout` peers at a time from full
//!   membership, each in turn.
//! - There is no disk: an `add` is durable the moment it is prepared, so it goes straight
//!   from `prepare_local` to `apply_local`, then `add_ok`.

mod lines;
pub(crate) mod message;
pub(crate) mod node;
mod runtime;

pub use runtime::{run, Config};

//! The event loop of `gctr maelstrom`: a thread reads stdin into a channel; the main
//! thread owns the node, waits on that channel until the engine's next deadline, feeds the
//! node every line that is waiting (one turn), runs the timer, and writes the turn's
//! messages to stdout with one flush. The clock is the time since start.
//!
//! The loop ends when stdin closes (exit 0) or stdout can no longer be written (an error).

use super::lines::{self, Line};
use super::node::Node;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};
use std::io::{self, BufWriter, Write};
use std::thread;
use std::time::Instant;

/// Longest input line accepted, in bytes. Gossip frames are at most the engine's payload
/// limit (1 MiB by default) in binary; their JSON form stays well inside this.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Lines handled in one turn at most, so the timer still runs under a flood of input.
const MAX_LINES_PER_TURN: usize = 4096;

/// How `gctr maelstrom` runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub gossip: crate::engine::Config,
    /// Seeds the engine's choice of peers.
    pub seed: u64,
}

/// Serves Maelstrom messages on stdin and stdout until stdin closes.
pub fn run(config: Config) -> io::Result<()> {
    let start = Instant::now();
    let input = spawn_reader();
    let mut node = Node::new(config.gossip, config.seed);
    let mut out = BufWriter::new(io::stdout().lock());
    loop {
        let now = start.elapsed();
        let first = match node.next_deadline() {
            Some(deadline) => match input.recv_timeout(deadline.saturating_sub(now)) {
                Ok(line) => Some(line),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match input.recv() {
                Ok(line) => Some(line),
                Err(_) => break,
            },
        };
        let now = start.elapsed();
        for line in first
            .into_iter()
            .chain(input.try_iter().take(MAX_LINES_PER_TURN))
        {
            node.handle_line(now, &line);
        }
        node.handle_timer(now);
        for line in node.drain_lines(now) {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    info!("stdin closed; stopping");
    Ok(())
}

/// Starts the thread that reads stdin line by line; the channel closes at end of input.
fn spawn_reader() -> Receiver<Vec<u8>> {
    let (tx, rx) = crossbeam_channel::bounded(MAX_LINES_PER_TURN);
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                match lines::read_line(&mut stdin, MAX_LINE_BYTES) {
                    Ok(Line::Text(line)) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                    Ok(Line::TooLong(len)) => {
                        warn!("skipped an input line of {len} bytes (limit {MAX_LINE_BYTES})")
                    }
                    Ok(Line::Eof) => return,
                    Err(e) => {
                        warn!("cannot read stdin: {e}");
                        return;
                    }
                }
            }
        })
        .expect("spawn the stdin thread");
    rx
}

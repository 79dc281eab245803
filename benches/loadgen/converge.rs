//! Convergence time: per repetition, `increments` increments of a fresh counter, each
//! sent to a random node by one of `connections` writer threads (each holding a
//! keep-alive connection to every node); then pollers read every node's counter in a
//! tight loop. The figure is the time from the last acknowledgement until the last node
//! is first seen reporting the final value. A node reporting more than was acknowledged
//! fails the run.
//!
//! With `keyed`, every increment carries an `Idempotency-Key` never used before, so each
//! is a new acceptance that travels as an element of its own until it is folded.
//!
//! A first repetition, not counted, warms the cluster up: the nodes' HTTP connection
//! threads and the gossip links between them start on first use, so the first burst
//! after a cluster starts measures their start-up, not how writes spread.
//!
//! Also per repetition: the time the cluster took to absorb the increments (first sent to
//! last acknowledged), and the gossip frames every node sent (their `GET /status`
//! figures, membership frames left out) from just before the first increment until just
//! after convergence, per increment.

use crate::http::{json_value, HttpConn, Keys};
use crate::stats::{ms, percentile};
use crossbeam_channel::RecvTimeoutError;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a waiting poller touches its connections.
const KEEP_WARM: Duration = Duration::from_millis(500);

pub struct Settings {
    pub nodes: Vec<String>,
    pub increments: u64,
    pub connections: usize,
    pub pollers: usize,
    pub reps: usize,
    pub timeout: Duration,
    /// Names the counters, so runs against the same cluster never share one.
    pub tag: String,
    /// Send every increment with a fresh idempotency key.
    pub keyed: bool,
}

pub fn run(settings: &Settings) -> io::Result<()> {
    let connect_all = || {
        settings
            .nodes
            .iter()
            .map(|n| HttpConn::connect(n))
            .collect::<io::Result<Vec<_>>>()
    };
    let mut writers = (0..settings.connections)
        .map(|_| connect_all())
        .collect::<io::Result<Vec<_>>>()?;
    let mut pollers = (0..settings.pollers.clamp(1, settings.nodes.len()))
        .map(|_| connect_all())
        .collect::<io::Result<Vec<_>>>()?;
    let run_id = fastrand::u32(..);
    let mut status = connect_all()?;
    let mut times = Vec::with_capacity(settings.reps);
    let mut totals = Vec::with_capacity(settings.reps);
    let mut absorbs = Vec::with_capacity(settings.reps);
    let mut frames = GossipFrames::default();
    let warm_up = format!("conv-{}-{run_id:08x}-warm-up", settings.tag);
    let (last_ack, seen) = write_then_poll(&mut writers, &mut pollers, &warm_up, settings)?;
    println!(
        "warm-up (not counted): converged {:.2} ms after the last",
        ms(seen.saturating_duration_since(last_ack))
    );
    for rep in 0..settings.reps {
        let counter = format!("conv-{}-{run_id:08x}-{rep}", settings.tag);
        let before = GossipFrames::read(&mut status)?;
        let write_start = Instant::now();
        let (last_ack, seen) = write_then_poll(&mut writers, &mut pollers, &counter, settings)?;
        let sent = GossipFrames::read(&mut status)?.minus(&before);
        let converged = seen.saturating_duration_since(last_ack);
        let per_increment = |n: u64| n as f64 / settings.increments as f64;
        println!(
            "rep {rep}: {} increments acknowledged in {:.1} ms, converged {:.2} ms after the \
             last; {:.2} gossip frames per increment ({:.2} push)",
            settings.increments,
            ms(last_ack - write_start),
            ms(converged),
            per_increment(sent.all),
            per_increment(sent.push)
        );
        times.push(converged);
        totals.push(seen.saturating_duration_since(write_start));
        absorbs.push(last_ack - write_start);
        frames.add(&sent);
    }
    absorbs.sort_unstable();
    times.sort_unstable();
    totals.sort_unstable();
    let (p50, p99, max) = (
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        percentile(&times, 100.0),
    );
    println!(
        "{} nodes, {} reps: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        settings.nodes.len(),
        settings.reps,
        ms(p50),
        ms(p99),
        ms(max)
    );
    // From the first increment sent until every node holds the last: the figure the
    // reference systems report for "1000 increments over 5 nodes".
    let total_p50 = percentile(&totals, 50.0);
    println!(
        "first increment sent to all nodes converged: p50 {:.1} ms",
        ms(total_p50)
    );
    let increments = (settings.increments * settings.reps as u64) as f64;
    println!(
        "RESULT reps={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} total_p50_ms={:.1} \
         absorb_p50_ms={:.1} frames_per_increment={:.2} push_per_increment={:.2}",
        settings.reps,
        ms(p50),
        ms(p99),
        ms(max),
        ms(total_p50),
        ms(percentile(&absorbs, 50.0)),
        frames.all as f64 / increments,
        frames.push as f64 / increments
    );
    Ok(())
}

/// Gossip frames sent, summed over nodes: every type but membership's, and pushes alone.
#[derive(Default)]
struct GossipFrames {
    all: u64,
    push: u64,
}

impl GossipFrames {
    /// Every node's figures from `GET /status`.
    fn read(conns: &mut [HttpConn]) -> io::Result<GossipFrames> {
        let mut total = GossipFrames::default();
        for conn in conns {
            let body = conn.expect_ok("GET", "/status")?;
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
            let out = v
                .pointer("/gossip/frames_out")
                .and_then(serde_json::Value::as_object)
                .ok_or_else(|| io::Error::other("GET /status has no gossip.frames_out"))?;
            for (kind, n) in out {
                let n = n.as_u64().unwrap_or(0);
                if kind != "member" {
                    total.all += n;
                }
                if kind == "push" {
                    total.push += n;
                }
            }
        }
        Ok(total)
    }

    fn minus(&self, earlier: &GossipFrames) -> GossipFrames {
        GossipFrames {
            all: self.all.saturating_sub(earlier.all),
            push: self.push.saturating_sub(earlier.push),
        }
    }

    fn add(&mut self, more: &GossipFrames) {
        self.all += more.all;
        self.push += more.push;
    }
}

/// Sends the increments, each with a fresh key if `keyed`; returns when the last was
/// acknowledged.
fn write(
    writers: &mut [Vec<HttpConn>],
    counter: &str,
    increments: u64,
    keyed: bool,
) -> io::Result<Instant> {
    let next = AtomicU64::new(0);
    let path = format!("/counters/{counter}/increment");
    let last_acks = std::thread::scope(|s| {
        let handles: Vec<_> = writers
            .iter_mut()
            .enumerate()
            .map(|(w, conns)| {
                let (next, path) = (&next, &path);
                let mut keys = keyed.then(|| Keys::new(format!("{counter}-{w}")));
                s.spawn(move || -> io::Result<Option<Instant>> {
                    let mut last = None;
                    while next.fetch_add(1, Ordering::Relaxed) < increments {
                        let node = fastrand::usize(..conns.len());
                        let headers = keys.as_mut().map_or("", Keys::next_header);
                        conns[node].expect_ok_with("POST", path, headers)?;
                        last = Some(Instant::now());
                    }
                    Ok(last)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer panicked"))
            .collect::<io::Result<Vec<_>>>()
    })?;
    last_acks
        .into_iter()
        .flatten()
        .max()
        .ok_or_else(|| io::Error::other("no increment was sent"))
}

/// Sends the increments, then polls every node until each reports the total; returns
/// when the last increment was acknowledged and when the last node first reported it.
/// The pollers start before the writes and keep their connections warm while they wait:
/// a node closes a keep-alive connection idle for its read timeout, and reopening one
/// after the writes would be counted in the convergence time.
fn write_then_poll(
    writers: &mut [Vec<HttpConn>],
    pollers: &mut [Vec<HttpConn>],
    counter: &str,
    settings: &Settings,
) -> io::Result<(Instant, Instant)> {
    let expected = settings.increments;
    let path = format!("/counters/{counter}");
    let count = pollers.len();
    let (go_tx, go_rx) = crossbeam_channel::unbounded::<bool>();
    std::thread::scope(|s| {
        let handles: Vec<_> = pollers
            .iter_mut()
            .enumerate()
            .map(|(i, conns)| {
                let (path, go) = (&path, go_rx.clone());
                s.spawn(move || -> io::Result<Option<Instant>> {
                    loop {
                        match go.recv_timeout(KEEP_WARM) {
                            Ok(true) => break,
                            Ok(false) | Err(RecvTimeoutError::Disconnected) => return Ok(None),
                            Err(RecvTimeoutError::Timeout) => {
                                for conn in conns.iter_mut() {
                                    conn.expect_ok("GET", "/health")?;
                                }
                            }
                        }
                    }
                    let deadline = Instant::now() + settings.timeout;
                    // Poller i watches nodes i, i + count, i + 2 * count, ...
                    let mut waiting: Vec<usize> = (i..conns.len()).step_by(count).collect();
                    let mut last_seen = Instant::now();
                    while !waiting.is_empty() {
                        if Instant::now() > deadline {
                            return Err(io::Error::other(format!(
                                "nodes {waiting:?} did not reach {expected} on {path} in {:?}",
                                settings.timeout
                            )));
                        }
                        let mut still = Vec::with_capacity(waiting.len());
                        for node in waiting {
                            let value = json_value(&conns[node].expect_ok("GET", path)?)?;
                            if value == expected as i64 {
                                last_seen = Instant::now();
                            } else if value > expected as i64 {
                                return Err(io::Error::other(format!(
                                    "node {node} reports {value} on {path}, over the {expected} acknowledged"
                                )));
                            } else {
                                still.push(node);
                            }
                        }
                        waiting = still;
                    }
                    Ok(Some(last_seen))
                })
            })
            .collect();
        let written = write(writers, counter, expected, settings.keyed);
        for _ in 0..count {
            let _ = go_tx.send(written.is_ok());
        }
        let seen = handles
            .into_iter()
            .map(|h| h.join().expect("poller panicked"))
            .collect::<io::Result<Vec<_>>>()?;
        let last_ack = written?;
        let seen = seen
            .into_iter()
            .flatten()
            .max()
            .expect("at least one poller");
        Ok((last_ack, seen))
    })
}

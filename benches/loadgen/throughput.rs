//! Closed-loop write throughput: `connections` threads, each with one keep-alive
//! connection, send the next increment as soon as the last is acknowledged. Operations
//! that start after the warm-up and finish before the end of the window are counted;
//! their latencies give p50 and p99.
//!
//! For gctr every acknowledgement is also counted, and afterwards the counter (a fresh
//! name per run) must read exactly that many: a fast server that loses writes fails.
//! With `keyed`, every increment carries an `Idempotency-Key` never used before (the
//! counter's name, the connection and a sequence number), so each is a new acceptance.
//! With `dashboard_poll`, a dashboard is left open on the node meanwhile (`dashboard`).

use crate::dashboard;
use crate::http::{json_value, HttpConn, Keys};
use crate::resp::RespConn;
use crate::stats::{ms, percentile};
use std::io;
use std::time::{Duration, Instant};

pub enum Target {
    /// A gctr node's HTTP address; increments a counter of this name, each increment
    /// with a fresh idempotency key if `keyed`.
    Gctr {
        http: String,
        counter: String,
        keyed: bool,
    },
    /// A Redis server's address; `INCR` on this key.
    Redis { addr: String, key: String },
    /// `GET path` on a gctr node: the cost of the HTTP layer alone, for diagnosis.
    Read { http: String, path: String },
}

enum Client {
    Http(HttpConn, &'static str, String, Option<Keys>),
    Resp(RespConn),
}

impl Client {
    /// Connection number `i` to `target`.
    fn connect(target: &Target, i: usize) -> io::Result<Client> {
        Ok(match target {
            Target::Gctr {
                http,
                counter,
                keyed,
            } => Client::Http(
                HttpConn::connect(http)?,
                "POST",
                format!("/counters/{counter}/increment"),
                keyed.then(|| Keys::new(format!("{counter}-{i}"))),
            ),
            Target::Read { http, path } => {
                Client::Http(HttpConn::connect(http)?, "GET", path.clone(), None)
            }
            Target::Redis { addr, key } => Client::Resp(RespConn::connect(addr, key)?),
        })
    }

    fn call(&mut self) -> io::Result<()> {
        match self {
            Client::Http(conn, method, path, keys) => {
                let headers = keys.as_mut().map_or("", Keys::next_header);
                conn.expect_ok_with(method, path, headers).map(drop)
            }
            Client::Resp(conn) => conn.incr().map(drop),
        }
    }
}

pub struct Settings {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Poll the node's `/dashboard.json` this often during the run, as an open
    /// dashboard page does.
    pub dashboard_poll: Option<Duration>,
}

/// What one thread saw.
#[derive(Default)]
struct ThreadFigures {
    acked: u64,
    latencies: Vec<Duration>,
}

pub fn run(target: &Target, settings: &Settings) -> io::Result<()> {
    let mut clients = (0..settings.connections)
        .map(|i| Client::connect(target, i))
        .collect::<io::Result<Vec<_>>>()?;
    let begin = Instant::now();
    let measure_from = begin + settings.warmup;
    let end = measure_from + settings.duration;
    let dashboard = match (target, settings.dashboard_poll) {
        (Target::Gctr { http, .. }, Some(every)) => Some((http.as_str(), every)),
        (_, Some(_)) => return Err(io::Error::other("--dashboard-poll needs --gctr")),
        (_, None) => None,
    };
    let (figures, polls) = std::thread::scope(|s| {
        let poller =
            dashboard.map(|(http, every)| s.spawn(move || dashboard::poll_until(http, every, end)));
        let handles: Vec<_> = clients
            .iter_mut()
            .map(|client| s.spawn(move || drive(client, measure_from, end)))
            .collect();
        let figures = handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect::<io::Result<Vec<_>>>();
        let polls = poller
            .map(|p| p.join().expect("dashboard poller panicked"))
            .transpose();
        (figures, polls)
    });
    let (figures, polls) = (figures?, polls?.unwrap_or(0));
    let acked: u64 = figures.iter().map(|f| f.acked).sum();
    let mut latencies: Vec<Duration> = figures.into_iter().flat_map(|f| f.latencies).collect();
    latencies.sort_unstable();
    let ops_per_s = latencies.len() as f64 / settings.duration.as_secs_f64();
    if let Target::Gctr { http, counter, .. } = target {
        let body = HttpConn::connect(http)?.expect_ok("GET", &format!("/counters/{counter}"))?;
        let value = json_value(&body)?;
        if value != acked as i64 {
            return Err(io::Error::other(format!(
                "counter {counter} reads {value} after {acked} acknowledged increments"
            )));
        }
        println!("exact: {counter} reads {value} = acknowledged increments");
    }
    println!(
        "{} connections: {ops_per_s:.0} ops/s, latency p50 {:.3} ms, p99 {:.3} ms",
        settings.connections,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
    );
    println!(
        "RESULT ops_per_s={ops_per_s:.0} p50_ms={:.3} p99_ms={:.3} acked={acked} dashboard_polls={polls}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
    );
    Ok(())
}

fn drive(client: &mut Client, measure_from: Instant, end: Instant) -> io::Result<ThreadFigures> {
    let mut figures = ThreadFigures::default();
    loop {
        let started = Instant::now();
        if started >= end {
            return Ok(figures);
        }
        client.call()?;
        figures.acked += 1;
        let done = Instant::now();
        if started >= measure_from && done <= end {
            figures.latencies.push(done - started);
        }
    }
}

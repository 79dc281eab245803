//! The load generator `scripts/bench.sh` drives: synchronous threads, keep-alive
//! connections, a hand-written HTTP/1.1 client (`http`) and a RESP client (`resp`).
//!
//! Commands: `throughput`, `converge`, `idle`, `seal`, `wait-peers`, `wait-member`,
//! `wait-health`, `get` and `free-port`; `loadgen --help` shows their options.
//!
//! Each measuring command ends with one `RESULT key=value ...` line for the script to
//! read. `cargo bench` appends `--bench` to the arguments; it is ignored.

mod converge;
mod dashboard;
mod http;
mod idle;
mod members;
mod resp;
mod seal;
mod stats;
mod throughput;

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "\
Usage:
  loadgen throughput --gctr HTTP_ADDR | --redis ADDR | --http HTTP_ADDR --path PATH
                     [--connections N] [--warmup DUR] [--duration DUR]
                     [--dashboard-poll DUR]   (with --gctr: GET /dashboard.json this often)
                     [--keyed]   (with --gctr: each increment with a new Idempotency-Key)
  loadgen converge   --nodes HTTP,HTTP,... [--increments N] [--connections N]
                     [--pollers N] [--reps N] [--timeout DUR] [--tag TAG] [--keyed]
  loadgen idle       --nodes HTTP,HTTP,... [--counters N] [--window DUR]
  loadgen seal       [--reps N]   (gossip keyring: bytes and time to seal and open)
  loadgen wait-peers --nodes HTTP,HTTP,... [--timeout DUR]
  loadgen wait-member --nodes HTTP,HTTP,... --member NAME --state STATE [--timeout DUR]
  loadgen wait-health --http ADDR --since-unix-ns NS [--timeout DUR]
  loadgen get --http ADDR --path PATH [--pointer /JSON/POINTER]
  loadgen free-port
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The options every command may take, with their defaults.
struct Options {
    gctr: Option<String>,
    redis: Option<String>,
    http: Option<String>,
    nodes: Vec<String>,
    connections: usize,
    pollers: usize,
    increments: u64,
    reps: usize,
    counters: usize,
    warmup: Duration,
    duration: Duration,
    window: Duration,
    timeout: Duration,
    since_unix_ns: Option<u128>,
    tag: String,
    path: String,
    pointer: Option<String>,
    dashboard_poll: Option<Duration>,
    member: Option<String>,
    state: Option<String>,
    keyed: bool,
}

fn run() -> Result<(), Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut command = None;
    let mut o = Options {
        gctr: None,
        redis: None,
        http: None,
        nodes: Vec::new(),
        connections: 1,
        pollers: 2,
        increments: 1000,
        reps: 20,
        counters: 100,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        window: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        since_unix_ns: None,
        tag: "run".into(),
        path: "/status".into(),
        pointer: None,
        dashboard_poll: None,
        member: None,
        state: None,
        keyed: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("bench") => {}
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            Value(v) if command.is_none() => command = Some(v.string()?),
            Long("gctr") => o.gctr = Some(parser.value()?.string()?),
            Long("redis") => o.redis = Some(parser.value()?.string()?),
            Long("http") => o.http = Some(parser.value()?.string()?),
            Long("nodes") => {
                o.nodes = parser
                    .value()?
                    .string()?
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            Long("connections") => o.connections = parser.value()?.parse()?,
            Long("pollers") => o.pollers = parser.value()?.parse()?,
            Long("increments") => o.increments = parser.value()?.parse()?,
            Long("reps") => o.reps = parser.value()?.parse()?,
            Long("counters") => o.counters = parser.value()?.parse()?,
            Long("warmup") => o.warmup = duration(parser.value()?.string()?)?,
            Long("duration") => o.duration = duration(parser.value()?.string()?)?,
            Long("window") => o.window = duration(parser.value()?.string()?)?,
            Long("timeout") => o.timeout = duration(parser.value()?.string()?)?,
            Long("since-unix-ns") => o.since_unix_ns = Some(parser.value()?.parse()?),
            Long("tag") => o.tag = parser.value()?.string()?,
            Long("path") => o.path = parser.value()?.string()?,
            Long("pointer") => o.pointer = Some(parser.value()?.string()?),
            Long("dashboard-poll") => o.dashboard_poll = Some(duration(parser.value()?.string()?)?),
            Long("member") => o.member = Some(parser.value()?.string()?),
            Long("state") => o.state = Some(parser.value()?.string()?),
            Long("keyed") => o.keyed = true,
            _ => return Err(arg.unexpected().into()),
        }
    }
    if o.connections == 0 || o.reps == 0 || o.increments == 0 || o.duration.is_zero() {
        return Err("--connections, --reps, --increments and --duration must be above zero".into());
    }
    if o.keyed && !matches!(command.as_deref(), Some("throughput" | "converge")) {
        return Err("--keyed is for throughput and converge".into());
    }
    match command.as_deref() {
        Some("throughput") => {
            let target = match (o.gctr, o.redis, o.http) {
                (Some(http), None, None) => throughput::Target::Gctr {
                    http,
                    counter: format!("tput-{:08x}", fastrand::u32(..)),
                    keyed: o.keyed,
                },
                _ if o.keyed => return Err("--keyed needs --gctr HTTP_ADDR".into()),
                (None, Some(addr), None) => throughput::Target::Redis {
                    addr,
                    key: "gctr-bench".into(),
                },
                (None, None, Some(http)) => throughput::Target::Read {
                    http,
                    path: o.path,
                },
                _ => {
                    return Err("throughput needs one of --gctr HTTP_ADDR, --redis ADDR or \
                         --http HTTP_ADDR (with --path, GET requests)"
                        .into())
                }
            };
            throughput::run(
                &target,
                &throughput::Settings {
                    connections: o.connections,
                    warmup: o.warmup,
                    duration: o.duration,
                    dashboard_poll: o.dashboard_poll,
                },
            )?;
        }
        Some("converge") => converge::run(&converge::Settings {
            nodes: need_nodes(o.nodes)?,
            increments: o.increments,
            connections: o.connections,
            pollers: o.pollers,
            reps: o.reps,
            timeout: o.timeout,
            tag: o.tag,
            keyed: o.keyed,
        })?,
        Some("idle") => idle::run(&idle::Settings {
            nodes: need_nodes(o.nodes)?,
            counters: o.counters,
            window: o.window,
            timeout: o.timeout,
        })?,
        Some("seal") => seal::run(&seal::Settings { reps: o.reps })?,
        Some("wait-peers") => wait_peers(&need_nodes(o.nodes)?, o.timeout)?,
        Some("wait-member") => members::wait_member(
            &need_nodes(o.nodes)?,
            &o.member.ok_or("wait-member needs --member NAME")?,
            &o.state.ok_or("wait-member needs --state STATE")?,
            o.timeout,
        )?,
        Some("wait-health") => {
            let http = o.http.ok_or("wait-health needs --http ADDR")?;
            let since = o
                .since_unix_ns
                .ok_or("wait-health needs --since-unix-ns NS")?;
            wait_health(&http, since, o.timeout)?;
        }
        Some("get") => {
            let http = o.http.ok_or("get needs --http ADDR")?;
            let body = http::HttpConn::connect(&http)?.expect_ok("GET", &o.path)?;
            match o.pointer {
                None => println!("{}", String::from_utf8_lossy(&body)),
                Some(pointer) => {
                    let v: serde_json::Value = serde_json::from_slice(&body)?;
                    let found = v
                        .pointer(&pointer)
                        .ok_or_else(|| format!("{} has no {pointer}", o.path))?;
                    println!("{found}");
                }
            }
        }
        Some("free-port") => println!("{}", TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()),
        Some(other) => return Err(format!("unknown command {other:?}").into()),
        None => return Err(
            "a command is needed: throughput, converge, idle, wait-peers, wait-health, get or free-port"
                .into(),
        ),
    }
    Ok(())
}

fn need_nodes(nodes: Vec<String>) -> Result<Vec<String>, Error> {
    if nodes.is_empty() {
        return Err("--nodes HTTP_ADDR,... is needed".into());
    }
    Ok(nodes)
}

fn duration(s: String) -> Result<Duration, Error> {
    humantime::parse_duration(&s).map_err(|e| format!("{s:?}: {e}").into())
}

/// Polls every node's `GET /status` until each reaches all the others and is ready for
/// idempotency keys (it has seen that its peers know it and hold what it holds; a build
/// without keys reports no such figure), so a measurement never starts on a cluster
/// still settling: until then nodes run every anti-entropy round for the digests.
fn wait_peers(nodes: &[String], timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let want = nodes.len() as u64 - 1;
    for node in nodes {
        let mut conn = http::HttpConn::connect(node)?;
        loop {
            let body = conn.expect_ok("GET", "/status")?;
            let status: serde_json::Value = serde_json::from_slice(&body)?;
            let reachable = status
                .pointer("/peers/reachable")
                .and_then(serde_json::Value::as_u64)
                .ok_or("GET /status has no peers.reachable")?;
            let ready = status
                .pointer("/keys/ready")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true);
            if reachable >= want && ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{node} reaches {reachable} of {want} peers (ready for keys: {ready}) \
                     after {timeout:?}"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    println!(
        "all {} nodes reach every other node and are ready for keys",
        nodes.len()
    );
    Ok(())
}

/// Polls `GET /health` until it answers 200; prints the time since `since_unix_ns` (when
/// the script launched the node).
fn wait_health(http: &str, since_unix_ns: u128, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        // Connecting includes a `GET /health` that must answer 200.
        if http::HttpConn::connect(http).is_ok() {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            let took = Duration::from_nanos(now.saturating_sub(since_unix_ns) as u64);
            println!("RESULT health_ms={:.1}", stats::ms(took));
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{http} did not answer /health within {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

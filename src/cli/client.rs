//! `gctr inc`, `gctr dec`, `gctr get`, `gctr peers`: the HTTP client commands.
//!
//! Each talks to one node's HTTP API: `--http ADDR` (default `127.0.0.1:9010`, the HTTP
//! address of a node started with `--addr 127.0.0.1:9000`), or `--node NAME`, looked up
//! in discovery (`--discovery URL`, else `GCTR_DISCOVERY`, else
//! `http://127.0.0.1:8000`). `get --all` asks that node for its peers and then every
//! node for the counter, and says whether they agree; `peers` prints the node's view
//! of the cluster.

use super::CliError;
use crate::crdt::{validate_counter_name, DEFAULT_COUNTER};
use crate::discovery::resolve;
use crate::http::{JsonClient, Timeouts};
use crate::node::views::{CounterView, PeerView, PeersView, ValueView};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use std::time::Duration;

/// The HTTP address used when `--http` is not given.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9010";
/// The discovery server `--node` asks when neither `--discovery` nor `GCTR_DISCOVERY`
/// names one.
pub const DEFAULT_DISCOVERY: &str = "http://127.0.0.1:8000";
/// The environment variable naming the discovery server for `--node`.
pub const DISCOVERY_ENV: &str = "GCTR_DISCOVERY";

/// Characters left as they are in a counter name inside a URL path.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Inc,
    Dec,
    Get,
    Peers,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Inc => "inc",
            Command::Dec => "dec",
            Command::Get => "get",
            Command::Peers => "peers",
        }
    }
}

fn help(cmd: Command) -> String {
    let common = format!(
        "  --http ADDR    the node's HTTP address, HOST:PORT or http://HOST:PORT
                 [default: {DEFAULT_HTTP}]
  --node NAME    the node named NAME, looked up in discovery (not with --http)
  --discovery URL
                 the discovery server for --node [default: ${DISCOVERY_ENV}, else
                 {DEFAULT_DISCOVERY}]
  --json         print the node's JSON answer instead of the bare value
  -h, --help     show this help

Exit codes: 0 success, 1 the operation failed (node or discovery unreachable, unknown
node name, refused), 2 usage error.
"
    );
    match cmd {
        Command::Inc | Command::Dec => {
            let verb = if cmd == Command::Inc {
                "increment"
            } else {
                "decrement"
            };
            format!(
                "gctr {}: {verb} a counter and print its new value

Usage: gctr {} [COUNTER] [--by N] [--node NAME | --http ADDR] [--json]

  COUNTER        the counter's name [default: {DEFAULT_COUNTER}]
  --by N         the amount, 1 to {} [default: 1]
{common}",
                cmd.name(),
                cmd.name(),
                i64::MAX
            )
        }
        Command::Get => format!(
            "gctr get: print a counter's value

Usage: gctr get [COUNTER] [--node NAME | --http ADDR] [--all] [--json]

  COUNTER        the counter's name [default: {DEFAULT_COUNTER}]
  --all          ask the node for its peers, then every node for the counter, and
                 print each node's value and whether they all agree; exits 1 if they
                 disagree or a node could not be asked
{common}"
        ),
        Command::Peers => format!(
            "gctr peers: show a node's view of the cluster

Usage: gctr peers [--node NAME | --http ADDR] [--json]

Prints the node itself, then one line per peer it knows: name, gossip and HTTP
addresses, whether its connection is up, and when it was last heard from.

{common}"
        ),
    }
}

/// Which node a command talks to.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Http(String),
    Node { name: String, discovery: String },
}

struct Options {
    counter: String,
    by: u64,
    target: Target,
    all: bool,
    json: bool,
}

pub fn run(cmd: Command, parser: &mut lexopt::Parser) -> Result<(), CliError> {
    let env = std::env::var(DISCOVERY_ENV).ok();
    let Some(options) = parse(cmd, parser, env)? else {
        print!("{}", help(cmd));
        return Ok(());
    };
    let client = match &options.target {
        Target::Http(http) => node_client(http),
        Target::Node { name, discovery } => node_client(
            &resolve(discovery, name)
                .map_err(|e| CliError::Failed(e.to_string()))?
                .to_string(),
        ),
    };
    match cmd {
        Command::Peers => peers(&client, options.json),
        Command::Inc => change(&client, &options, "increment"),
        Command::Dec => change(&client, &options, "decrement"),
        Command::Get if options.all => get_all(&client, &options),
        Command::Get => {
            let view: CounterView = client.get(&counter_path(&options.counter))?;
            print_value(&view, view.value, options.json)
        }
    }
}

/// Parses the options; `None` means `--help` was asked for. `env_discovery` is the
/// value of `GCTR_DISCOVERY`, if set.
fn parse(
    cmd: Command,
    parser: &mut lexopt::Parser,
    env_discovery: Option<String>,
) -> Result<Option<Options>, CliError> {
    use lexopt::prelude::*;
    let mut counter: Option<String> = None;
    let mut by: Option<u64> = None;
    let mut http: Option<String> = None;
    let mut node: Option<String> = None;
    let mut discovery: Option<String> = None;
    let mut all = false;
    let mut json = false;
    let name = cmd.name();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("by") if matches!(cmd, Command::Inc | Command::Dec) => {
                let v = parser.value()?.string()?;
                by = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| (1..=i64::MAX as u64).contains(n))
                        .ok_or_else(|| {
                            CliError::Usage(format!(
                                "--by must be a whole number from 1 to {}, not {v:?}",
                                i64::MAX
                            ))
                        })?,
                );
            }
            Long("http") => http = Some(parser.value()?.string()?),
            Long("node") => node = Some(parser.value()?.string()?),
            Long("discovery") => discovery = Some(parser.value()?.string()?),
            Long("all") if cmd == Command::Get => all = true,
            Long("json") => json = true,
            Value(v) if counter.is_none() && cmd != Command::Peers => counter = Some(v.string()?),
            Value(v) if cmd == Command::Peers => {
                return Err(CliError::Usage(format!(
                    "`gctr peers` takes no arguments; got {:?}",
                    v.to_string_lossy()
                )))
            }
            Value(v) => {
                return Err(CliError::Usage(format!(
                    "`gctr {name}` takes one counter name; {:?} is one too many",
                    v.to_string_lossy()
                )))
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let target = target(http, node, discovery, env_discovery)?;
    let counter = counter.unwrap_or_else(|| DEFAULT_COUNTER.to_owned());
    validate_counter_name(&counter).map_err(|e| CliError::Usage(e.to_string()))?;
    if counter == "." || counter == ".." {
        // URL clients resolve these as path steps (even percent-encoded), so the request
        // would reach another counter.
        return Err(CliError::Usage(format!(
            "the counter {counter:?} cannot be named in a URL path"
        )));
    }
    Ok(Some(Options {
        counter,
        by: by.unwrap_or(1),
        target,
        all,
        json,
    }))
}

/// Which node to ask: `--http`, else `--node` through discovery (`--discovery`, else
/// `GCTR_DISCOVERY`, else the default), else the default HTTP address.
fn target(
    http: Option<String>,
    node: Option<String>,
    discovery: Option<String>,
    env_discovery: Option<String>,
) -> Result<Target, CliError> {
    match (http, node) {
        (Some(_), Some(_)) => Err(CliError::Usage(
            "give --node NAME or --http ADDR, not both".into(),
        )),
        (_, None) if discovery.is_some() => Err(CliError::Usage(
            "--discovery is only used with --node NAME".into(),
        )),
        (http, None) => Ok(Target::Http(
            http.unwrap_or_else(|| DEFAULT_HTTP.to_owned()),
        )),
        (None, Some(name)) => Ok(Target::Node {
            name,
            discovery: discovery
                .or(env_discovery.filter(|d| !d.trim().is_empty()))
                .unwrap_or_else(|| DEFAULT_DISCOVERY.to_owned()),
        }),
    }
}

fn change(client: &JsonClient, options: &Options, verb: &str) -> Result<(), CliError> {
    let path = format!(
        "{}/{verb}?by={}",
        counter_path(&options.counter),
        options.by
    );
    let view: ValueView = client.post(&path)?;
    print_value(&view, view.value, options.json)
}

fn print_value(view: &impl Serialize, value: i64, json: bool) -> Result<(), CliError> {
    if json {
        println!("{}", to_json(view)?);
    } else {
        println!("{value}");
    }
    Ok(())
}

/// One node's answer in `get --all`.
#[derive(Debug, Serialize)]
struct NodeValue {
    name: Option<String>,
    http_addr: Option<String>,
    value: Option<i64>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct AllView {
    counter: String,
    nodes: Vec<NodeValue>,
    agree: bool,
}

fn get_all(client: &JsonClient, options: &Options) -> Result<(), CliError> {
    let peers: PeersView = client.get("/peers")?;
    let path = counter_path(&options.counter);
    let mut nodes = vec![ask_node(
        client,
        Some(peers.me.name),
        Some(peers.me.http_addr),
        &path,
    )];
    for p in peers.peers {
        let node = match &p.http_addr {
            Some(http) => ask_node(&node_client(http), p.name, p.http_addr.clone(), &path),
            None => NodeValue {
                name: p.name,
                http_addr: None,
                value: None,
                error: Some(format!(
                    "HTTP address not known yet (gossip address {})",
                    p.gossip_addr
                )),
            },
        };
        nodes.push(node);
    }
    let first = nodes[0].value;
    let agree = nodes.iter().all(|n| n.value.is_some() && n.value == first);
    let view = AllView {
        counter: options.counter.clone(),
        nodes,
        agree,
    };
    if options.json {
        println!("{}", to_json(&view)?);
    } else {
        print_table(&view);
    }
    if agree {
        Ok(())
    } else if view.nodes.iter().any(|n| n.value.is_none()) {
        Err(CliError::Failed("some nodes could not be asked".into()))
    } else {
        Err(CliError::Failed(format!(
            "the nodes disagree on {:?} (still converging, or partitioned)",
            view.counter
        )))
    }
}

fn ask_node(
    client: &JsonClient,
    name: Option<String>,
    http_addr: Option<String>,
    path: &str,
) -> NodeValue {
    let (value, error) = match client.get::<CounterView>(path) {
        Ok(v) => (Some(v.value), None),
        Err(e) => (None, Some(e.to_string())),
    };
    NodeValue {
        name,
        http_addr,
        value,
        error,
    }
}

fn print_table(view: &AllView) {
    let width = view
        .nodes
        .iter()
        .map(|n| n.name.as_deref().unwrap_or("?").len())
        .max()
        .unwrap_or(1)
        .max(4);
    println!("{:width$}  {:21}  VALUE", "NODE", "HTTP");
    for n in &view.nodes {
        let value = match (&n.value, &n.error) {
            (Some(v), _) => v.to_string(),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "?".into(),
        };
        println!(
            "{:width$}  {:21}  {value}",
            n.name.as_deref().unwrap_or("?"),
            n.http_addr.as_deref().unwrap_or("?"),
        );
    }
    if view.agree {
        println!("all {} nodes agree", view.nodes.len());
    } else {
        println!("the nodes do NOT agree");
    }
}

fn peers(client: &JsonClient, json: bool) -> Result<(), CliError> {
    let view: PeersView = client.get("/peers")?;
    if json {
        println!("{}", to_json(&view)?);
    } else {
        print_peers(&view);
    }
    Ok(())
}

fn print_peers(view: &PeersView) {
    println!(
        "node {} ({}) gossip {} http {}",
        view.me.name, view.me.origin, view.me.gossip_addr, view.me.http_addr
    );
    if view.peers.is_empty() {
        println!("no peers known");
        return;
    }
    let rows: Vec<[String; 5]> = view.peers.iter().map(peer_row).collect();
    let header = ["NAME", "GOSSIP", "HTTP", "REACHABLE", "LAST HEARD"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let reachable = view.peers.iter().filter(|p| p.reachable).count();
    println!("{} peers, {reachable} reachable", view.peers.len());
}

fn peer_row(p: &PeerView) -> [String; 5] {
    [
        p.name.clone().unwrap_or_else(|| "?".into()),
        p.gossip_addr.clone(),
        p.http_addr.clone().unwrap_or_else(|| "?".into()),
        if p.reachable { "yes" } else { "no" }.into(),
        match p.last_heard_ms_ago {
            Some(ms) => format!(
                "{} ago",
                humantime::format_duration(Duration::from_millis(ms))
            ),
            None => "never".into(),
        },
    ]
}

fn counter_path(counter: &str) -> String {
    format!("/counters/{}", utf8_percent_encode(counter, PATH_SEGMENT))
}

fn to_json(view: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string(view).map_err(|e| CliError::Failed(e.to_string()))
}

/// A short-timeout client for the node at `http`.
fn node_client(http: &str) -> JsonClient {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_secs(10),
    };
    JsonClient::new(http, "the node", timeouts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(cmd: Command, args: &[&str]) -> Result<Option<Options>, CliError> {
        parse_env(cmd, args, None)
    }

    fn parse_env(
        cmd: Command,
        args: &[&str],
        env: Option<&str>,
    ) -> Result<Option<Options>, CliError> {
        parse(
            cmd,
            &mut lexopt::Parser::from_args(args.iter().copied()),
            env.map(String::from),
        )
    }

    fn target(cmd: Command, args: &[&str], env: Option<&str>) -> Target {
        parse_env(cmd, args, env).unwrap().unwrap().target
    }

    fn node(name: &str, discovery: &str) -> Target {
        Target::Node {
            name: name.into(),
            discovery: discovery.into(),
        }
    }

    #[test]
    fn node_is_looked_up_in_the_discovery_given_else_the_environment_else_the_default() {
        let get = Command::Get;
        assert_eq!(
            target(get, &["--node", "3"], None),
            node("3", DEFAULT_DISCOVERY)
        );
        assert_eq!(
            target(get, &["--node", "3"], Some("http://d:1")),
            node("3", "http://d:1")
        );
        assert_eq!(
            target(get, &["--node", "3"], Some(" ")),
            node("3", DEFAULT_DISCOVERY)
        );
        assert_eq!(
            target(
                get,
                &["--node", "3", "--discovery", "d:2"],
                Some("http://d:1")
            ),
            node("3", "d:2")
        );
        assert_eq!(
            target(Command::Peers, &["--http", "h:1"], Some("http://d:1")),
            Target::Http("h:1".into())
        );
    }

    #[test]
    fn defaults_and_usage_errors() {
        let o = parse_args(Command::Inc, &[]).unwrap().unwrap();
        assert_eq!(
            (o.counter.as_str(), o.by, o.target),
            ("default", 1, Target::Http(DEFAULT_HTTP.into()))
        );
        for (cmd, args) in [
            (Command::Inc, &["--by", "0"][..]),
            (Command::Inc, &["--by", "-1"]),
            (Command::Dec, &["--by", "9223372036854775808"]),
            (Command::Get, &["--by", "2"]),
            (Command::Inc, &["--all"]),
            (Command::Get, &["a", "b"]),
            (Command::Get, &["--node", "x", "--http", "h:1"]),
            (Command::Inc, &["--http", "h:1", "--node", "x"]),
            (Command::Dec, &["--discovery", "d:1"]),
            (Command::Peers, &["default"]),
            (Command::Peers, &["--by", "2"]),
            (Command::Peers, &["--all"]),
            (Command::Get, &[""]),
            (Command::Inc, &[".."]),
            (Command::Get, &["."]),
        ] {
            assert!(
                matches!(parse_args(cmd, args), Err(CliError::Usage(_))),
                "{cmd:?} {args:?} was accepted"
            );
        }
    }

    #[test]
    fn counter_names_are_escaped_as_one_path_segment() {
        assert_eq!(counter_path("a/b c"), "/counters/a%2Fb%20c");
        assert_eq!(counter_path("x-y_z"), "/counters/x-y_z");
    }
}

//! The HTTP client commands: `gctr inc`, `dec`, `get` (one counter), and the cluster
//! commands `peers`, `members`, `join` and `remove` (see `cluster.rs`): their options,
//! and which node they ask.
//!
//! Each talks to one node's HTTP API: `--http ADDR` (default `127.0.0.1:9010`, the HTTP
//! address of a node started with `--addr 127.0.0.1:9000`), or `--node NAME`, looked up
//! in discovery (`--discovery URL`, else `GCTR_DISCOVERY`, else
//! `http://127.0.0.1:8000`).

use super::cluster;
use super::security::{ClientCredentialFlags, TOKEN_ENV};
use super::CliError;
use crate::crdt::{validate_counter_name, DEFAULT_COUNTER};
use crate::discovery::resolve;
use crate::http::client::base_url;
use crate::http::{Credentials, JsonClient, Timeouts};
use crate::node::views::{CounterView, ValueView};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The HTTP address used when `--http` is not given.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9010";
/// The discovery server `--node` asks when neither `--discovery` nor `GCTR_DISCOVERY`
/// names one.
pub const DEFAULT_DISCOVERY: &str = "http://127.0.0.1:8000";
/// The environment variable naming the discovery server for `--node`.
pub const DISCOVERY_ENV: &str = "GCTR_DISCOVERY";

/// Characters left as they are in a name inside a URL path.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Inc,
    Dec,
    Get,
    Peers,
    Members,
    Join,
    Remove,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Inc => "inc",
            Command::Dec => "dec",
            Command::Get => "get",
            Command::Peers => "peers",
            Command::Members => "members",
            Command::Join => "join",
            Command::Remove => "remove",
        }
    }

    /// What the command's one argument is, if it takes one.
    fn argument(self) -> Option<&'static str> {
        match self {
            Command::Inc | Command::Dec | Command::Get => Some("COUNTER"),
            Command::Join => Some("ADDR"),
            Command::Remove => Some("NAME"),
            Command::Peers | Command::Members => None,
        }
    }
}

fn help(cmd: Command) -> String {
    format!("{}{}", command_help(cmd), common_help())
}

/// The options every client command takes, and the exit codes.
pub(super) fn common_help() -> String {
    format!(
        "  --http ADDR    the node's HTTP address, HOST:PORT, http://HOST:PORT or
                 https://HOST:PORT [default: {DEFAULT_HTTP}]
  --node NAME    the node named NAME, looked up in discovery (not with --http);
                 asked over HTTPS when the discovery URL is https://
  --discovery URL
                 the discovery server for --node [default: ${DISCOVERY_ENV}, else
                 {DEFAULT_DISCOVERY}]
  --token TOKEN  the API token of a node (and discovery) started with
                 --api-token-file, sent to both [default: ${TOKEN_ENV}]
  --ca FILE      trust only the PEM CA certificate(s) in FILE for https://
                 addresses [default: the public web's roots]
  --json         print the node's JSON answer instead of text
  -h, --help     show this help

Exit codes: 0 success, 1 the operation failed (node or discovery unreachable, unknown
node name, refused), 2 usage error.
"
    )
}

/// What the command does, its usage and its own arguments.
fn command_help(cmd: Command) -> String {
    let name = cmd.name();
    match cmd {
        Command::Inc | Command::Dec => format!(
            "gctr {name}: {} a counter and print its new value

Usage: gctr {name} [COUNTER] [--by N] [--id KEY] [--node NAME | --http ADDR] [--json]

  COUNTER        the counter's name [default: {DEFAULT_COUNTER}]
  --by N         the amount, 1 to {} [default: 1]
  --id KEY       an idempotency key (1 to 128 bytes): the operation counts once
                 however often it is sent with this key, to any node, within the
                 nodes' --idempotency-window; the same key with another counter,
                 direction or amount is refused (HTTP 422)
",
            if cmd == Command::Inc {
                "increment"
            } else {
                "decrement"
            },
            i64::MAX
        ),
        Command::Get => format!(
            "gctr get: print a counter's value

Usage: gctr get [COUNTER] [--node NAME | --http ADDR] [--all] [--json]

  COUNTER        the counter's name [default: {DEFAULT_COUNTER}]
  --all          ask the node for its members, then every live member for the
                 counter, and print each one's value and whether they all agree
                 (dead and left members are listed apart); exits 1 if live members
                 disagree or one could not be asked
"
        ),
        Command::Peers => "gctr peers: show a node's view of the cluster

Usage: gctr peers [--node NAME | --http ADDR] [--json]

Prints the node itself, then one line per other member: name, gossip and HTTP
addresses, state, whether it is reachable (alive), and when it was last heard from.

"
        .into(),
        Command::Members => "gctr members: list the members a node knows, itself included

Usage: gctr members [--node NAME | --http ADDR] [--json]

One line per member: name, state (alive, suspect, dead or left), gossip and HTTP
addresses, how long it has been in that state, and its origin.

"
        .into(),
        Command::Join => "gctr join: make a node join a cluster through another node

Usage: gctr join ADDR [--node NAME | --http ADDR] [--json]

  ADDR           the gossip address (HOST:PORT) of any member of the cluster to join
"
        .into(),
        Command::Remove => "gctr remove: mark a member left, cluster-wide

Usage: gctr remove NAME [--node NAME | --http ADDR] [--json]

  NAME           the member to remove. A live node so removed stays out until it
                 restarts with a new data directory or is joined again explicitly
"
        .into(),
    }
}

/// Which node a command talks to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target {
    Http(String),
    Node { name: String, discovery: String },
}

struct Options {
    /// The counter, address or member name the command takes.
    argument: String,
    by: u64,
    /// `--id KEY`: the idempotency key of an increment or decrement.
    id: Option<String>,
    target: Target,
    all: bool,
    json: bool,
    credentials: Credentials,
}

/// The environment variables the client commands read.
#[derive(Default)]
struct Env {
    /// `GCTR_DISCOVERY`.
    discovery: Option<String>,
    /// `GCTR_TOKEN`.
    token: Option<String>,
}

pub fn run(cmd: Command, parser: &mut lexopt::Parser) -> Result<(), CliError> {
    let env = Env {
        discovery: std::env::var(DISCOVERY_ENV).ok(),
        token: std::env::var(TOKEN_ENV).ok(),
    };
    let Some(options) = parse(cmd, parser, env)? else {
        print!("{}", help(cmd));
        return Ok(());
    };
    let client = client_for(&options.target, &options.credentials)?;
    let (arg, json) = (options.argument.as_str(), options.json);
    match cmd {
        Command::Peers => cluster::peers(&client, json),
        Command::Members => cluster::members(&client, json),
        Command::Join => cluster::join(&client, arg, json),
        Command::Remove => cluster::remove(&client, arg, json),
        Command::Inc => change(&client, &options, "increment"),
        Command::Dec => change(&client, &options, "decrement"),
        Command::Get if options.all => cluster::get_all(&client, arg, &counter_path(arg), json),
        Command::Get => {
            let view: CounterView = client.get(&counter_path(arg))?;
            print_value(&view, view.value, json)
        }
    }
}

/// Parses the options; `None` means `--help` was asked for.
fn parse(cmd: Command, parser: &mut lexopt::Parser, env: Env) -> Result<Option<Options>, CliError> {
    use lexopt::prelude::*;
    let mut argument: Option<String> = None;
    let mut by: Option<u64> = None;
    let mut id: Option<String> = None;
    let mut http: Option<String> = None;
    let mut node: Option<String> = None;
    let mut discovery: Option<String> = None;
    let mut all = false;
    let mut json = false;
    let mut credentials = ClientCredentialFlags::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long(flag) if ClientCredentialFlags::is_flag(flag) => {
                let flag = flag.to_owned();
                credentials.take(&flag, parser)?;
            }
            Long("by") if matches!(cmd, Command::Inc | Command::Dec) => {
                let v = parser.value()?.string()?;
                by = Some(super::flags::number("--by", &v, 1..=i64::MAX as u64)?);
            }
            Long("id") if matches!(cmd, Command::Inc | Command::Dec) => {
                let v = parser.value()?.string()?;
                crate::crdt::validate_key(&v).map_err(|e| CliError::Usage(format!("--id: {e}")))?;
                id = Some(v);
            }
            Long("http") => http = Some(parser.value()?.string()?),
            Long("node") => node = Some(parser.value()?.string()?),
            Long("discovery") => discovery = Some(parser.value()?.string()?),
            Long("all") if cmd == Command::Get => all = true,
            Long("json") => json = true,
            Value(v) if argument.is_none() && cmd.argument().is_some() => {
                argument = Some(v.string()?)
            }
            Value(v) => return Err(extra_argument(cmd, &v.to_string_lossy())),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let target = target(http, node, discovery, env.discovery)?;
    Ok(Some(Options {
        argument: check_argument(cmd, argument)?,
        by: by.unwrap_or(1),
        id,
        target,
        all,
        json,
        credentials: credentials.finish(env.token)?,
    }))
}

fn extra_argument(cmd: Command, got: &str) -> CliError {
    let name = cmd.name();
    CliError::Usage(match cmd.argument() {
        None => format!("`gctr {name}` takes no arguments; got {got:?}"),
        Some(what) => format!("`gctr {name}` takes one {what}; {got:?} is one too many"),
    })
}

/// The command's argument, checked: a valid counter name (the default one when left
/// out), an address, or a member name.
fn check_argument(cmd: Command, argument: Option<String>) -> Result<String, CliError> {
    let usage = |m: String| CliError::Usage(m);
    match cmd {
        Command::Inc | Command::Dec | Command::Get => {
            let counter = argument.unwrap_or_else(|| DEFAULT_COUNTER.to_owned());
            validate_counter_name(&counter).map_err(|e| usage(e.to_string()))?;
            if counter == "." || counter == ".." {
                // URL clients resolve these as path steps (even percent-encoded), so the
                // request would reach another counter.
                return Err(usage(format!(
                    "the counter {counter:?} cannot be named in a URL path"
                )));
            }
            Ok(counter)
        }
        Command::Join | Command::Remove => {
            let what = cmd.argument().unwrap_or_default();
            let value =
                argument.ok_or_else(|| usage(format!("`gctr {}` needs {what}", cmd.name())))?;
            if cmd == Command::Remove {
                crate::crdt::validate_node_name(&value).map_err(|e| usage(e.to_string()))?;
            }
            Ok(value)
        }
        Command::Peers | Command::Members => Ok(String::new()),
    }
}

/// A client for the node `target` names (looked up in discovery for `--node`).
/// A client of the node `target` names, proving `credentials`.
pub(super) fn client_for(
    target: &Target,
    credentials: &Credentials,
) -> Result<JsonClient, CliError> {
    Ok(match target {
        Target::Http(http) => node_client(http, credentials),
        Target::Node { name, discovery } => {
            let addr = resolve(discovery, name, credentials)
                .map_err(|e| CliError::Failed(e.to_string()))?;
            node_client(&node_url(discovery, addr), credentials)
        }
    })
}

/// Which node to ask: `--http`, else `--node` through discovery (`--discovery`, else
/// `GCTR_DISCOVERY`, else the default), else the default HTTP address.
pub(super) fn target(
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
        counter_path(&options.argument),
        options.by
    );
    let headers: Vec<(&str, &str)> = options
        .id
        .iter()
        .map(|key| ("Idempotency-Key", key.as_str()))
        .collect();
    let view: ValueView = client.post(&path, &headers)?;
    print_value(&view, view.value, options.json)
}

fn print_value(view: &impl Serialize, value: i64, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string(view).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        println!("{value}");
    }
    Ok(())
}

/// `name` escaped as one URL path segment.
pub fn path_segment(name: &str) -> String {
    utf8_percent_encode(name, PATH_SEGMENT).to_string()
}

fn counter_path(counter: &str) -> String {
    format!("/counters/{}", path_segment(counter))
}

/// The URL of a node found through `discovery`: over HTTPS when discovery is.
fn node_url(discovery: &str, addr: SocketAddr) -> String {
    if base_url(discovery).starts_with("https://") {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// A short-timeout client for the node at `http`.
fn node_client(http: &str, credentials: &Credentials) -> JsonClient {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_secs(10),
    };
    JsonClient::new(http, "the node", timeouts, credentials)
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
        let env = Env {
            discovery: env.map(String::from),
            token: None,
        };
        parse(
            cmd,
            &mut lexopt::Parser::from_args(args.iter().copied()),
            env,
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
            (o.argument.as_str(), o.by, o.target),
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

//! The command line: subcommand dispatch, the shared error type and exit codes.
//!
//! Exit codes: 0 on success, 1 when the operation failed, 2 on a usage error. Errors go
//! to stderr prefixed `gctr:`. Parsing works from any iterator of arguments, so tests
//! need no real command line.

mod client;
mod cluster;
mod discovery;
mod env;
mod flags;
mod health;
mod keys;
mod maelstrom;
mod node;
mod node_membership;
mod node_wal;
mod open_files;
mod security;

use std::ffi::OsString;
use std::fmt;

const USAGE: &str = "\
gctr: an AP distributed counter

Usage: gctr <COMMAND> [OPTIONS]

Commands:
  discovery   run the discovery server
  node        run a node
  inc         increment a counter
  dec         decrement a counter
  get         read a counter
  peers       show a node's view of the cluster
  members     list the members a node knows, with their states
  join        make a node join a cluster through another node
  remove      mark a member left, cluster-wide
  health      check that a node or discovery server answers (for health checks)
  keygen      print a new gossip key
  keys        list, install, use and remove gossip keys in a running cluster
  maelstrom   run a node under the Maelstrom protocol (stdin/stdout)

Run `gctr <COMMAND> --help` for a command's options.
Exit codes: 0 success, 1 the operation failed, 2 usage error.
";

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong: exit 2.
    Usage(String),
    /// The operation failed: exit 1.
    Failed(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<crate::http::HttpError> for CliError {
    /// The server's answer, with what to do about a missing token (a read-only one is
    /// explained by the server's own message).
    fn from(e: crate::http::HttpError) -> CliError {
        let hint = match &e {
            crate::http::HttpError::Refused { status: 401, .. } => {
                " (give a token with --token or GCTR_TOKEN)"
            }
            _ => "",
        };
        CliError::Failed(format!("{e}{hint}"))
    }
}

impl From<lexopt::Error> for CliError {
    fn from(e: lexopt::Error) -> CliError {
        CliError::Usage(e.to_string())
    }
}

/// The subcommands, each with a `--help` of its own.
pub const COMMANDS: [&str; 13] = [
    "discovery",
    "node",
    "inc",
    "dec",
    "get",
    "peers",
    "members",
    "join",
    "remove",
    "health",
    "keygen",
    "keys",
    "maelstrom",
];

/// Runs the command line given (without the program name) and returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let command = args
        .first()
        .and_then(|a| a.to_str())
        .filter(|a| COMMANDS.contains(a));
    match run(args.clone()) {
        Ok(()) => 0,
        Err(CliError::Usage(m)) => {
            eprintln!("gctr: {m}");
            match command {
                Some(c) => eprintln!("gctr: try `gctr {c} --help`"),
                None => eprintln!("gctr: try `gctr --help`"),
            }
            2
        }
        Err(CliError::Failed(m)) => {
            eprintln!("gctr: {m}");
            1
        }
    }
}

fn run(args: impl IntoIterator<Item = OsString>) -> Result<(), CliError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    match parser.next()? {
        Some(Short('h') | Long("help")) => {
            print!("{USAGE}");
            Ok(())
        }
        Some(Long("version")) => {
            println!("gctr {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(Value(cmd)) => {
            let cmd = cmd.string()?;
            match cmd.as_str() {
                "discovery" => discovery::run(&mut parser),
                "node" => node::run(&mut parser),
                "inc" => client::run(client::Command::Inc, &mut parser),
                "dec" => client::run(client::Command::Dec, &mut parser),
                "get" => client::run(client::Command::Get, &mut parser),
                "peers" => client::run(client::Command::Peers, &mut parser),
                "members" => client::run(client::Command::Members, &mut parser),
                "join" => client::run(client::Command::Join, &mut parser),
                "remove" => client::run(client::Command::Remove, &mut parser),
                "health" => health::run(&mut parser),
                "keygen" => keys::keygen(&mut parser),
                "keys" => keys::run(&mut parser),
                "maelstrom" => maelstrom::run(&mut parser),
                other => Err(CliError::Usage(format!(
                    "unknown command `{other}` (commands: {})",
                    COMMANDS.join(", ")
                ))),
            }
        }
        Some(arg) => Err(arg.unexpected().into()),
        None => Err(CliError::Usage("no command given".into())),
    }
}

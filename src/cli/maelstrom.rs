//! `gctr maelstrom`: its options and start-up.

use super::flags::{self, FlagHelp, GossipFlags};
use super::CliError;
use crate::maelstrom::{self, Config};
use log::LevelFilter;

fn help() -> String {
    let more = [
        FlagHelp::with_default("--seed N", "seed for the choice of gossip peers", "random"),
        flags::log_level_help(),
        FlagHelp::new("-h, --help", "print this help"),
    ];
    let all: Vec<FlagHelp> = GossipFlags::help().into_iter().chain(more).collect();
    format!(
        "gctr maelstrom: run one node under the Maelstrom protocol

Reads Maelstrom messages (one JSON object per line) on stdin, writes messages on stdout
and logs on stderr. Serves the pn-counter workload (add, read) on the `default` counter,
plus replicate and gossip_status; nodes gossip with each other through Maelstrom.

Usage: gctr maelstrom [OPTIONS]

Options:
{}",
        flags::render(&all)
    )
}

pub fn run(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    use lexopt::prelude::*;
    let mut gossip = GossipFlags::default();
    let mut seed = None;
    let mut level = LevelFilter::Info;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("seed") => seed = Some(parser.value()?.parse()?),
            Long("log-level") => level = flags::log_level(&parser.value()?.string()?)?,
            Short('h') | Long("help") => {
                print!("{}", help());
                return Ok(());
            }
            Long(flag) => {
                let flag = flag.to_owned();
                if !gossip.take(&flag, parser)? {
                    return Err(CliError::Usage(format!("invalid option '--{flag}'")));
                }
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    crate::logging::init(level);
    let config = Config {
        gossip: gossip.finish(),
        seed: seed.unwrap_or_else(|| fastrand::u64(..)),
    };
    maelstrom::run(config).map_err(|e| CliError::Failed(format!("maelstrom: {e}")))
}

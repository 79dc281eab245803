//! `gctr maelstrom`: its options and start-up.

use super::CliError;
use crate::engine::Config;
use crate::maelstrom::{self, Settings};
use log::LevelFilter;
use std::time::Duration;

const HELP: &str = "\
gctr maelstrom: run one node under the Maelstrom protocol

Reads Maelstrom messages (one JSON object per line) on stdin, writes messages on stdout
and logs on stderr. Serves the pn-counter workload (add, read) on the `default` counter,
plus replicate and gossip_status; nodes gossip with each other through Maelstrom.

Usage: gctr maelstrom [OPTIONS]

Options:
  --gossip-interval DUR  anti-entropy interval, e.g. 100ms, 1s [default: 100ms]
  --fanout N             peers per gossip round, and the fewest a push goes to
                         (ln(n) + 3 in a cluster of n nodes when more) [default: 2]
  --no-eager-push        send local changes only in anti-entropy rounds
  --seed N               seed for the choice of gossip peers [default: random]
  --log-level LEVEL      off, error, warn, info, debug, trace [default: info]
  -h, --help             print this help
";

pub fn run(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    use lexopt::prelude::*;
    let mut gossip = Config::default();
    let mut seed = None;
    let mut level = LevelFilter::Info;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("gossip-interval") => {
                let text = parser.value()?.string()?;
                let interval = humantime::parse_duration(&text)
                    .map_err(|e| CliError::Usage(format!("--gossip-interval {text:?}: {e}")))?;
                if interval < Duration::from_millis(1) {
                    return Err(CliError::Usage(
                        "--gossip-interval must be at least 1ms".into(),
                    ));
                }
                gossip.gossip_interval = interval;
            }
            Long("fanout") => {
                let fanout: usize = parser.value()?.parse()?;
                if fanout == 0 {
                    return Err(CliError::Usage("--fanout must be at least 1".into()));
                }
                gossip.fanout = fanout;
            }
            Long("no-eager-push") => gossip.eager_push = false,
            Long("seed") => seed = Some(parser.value()?.parse()?),
            Long("log-level") => {
                let text = parser.value()?.string()?;
                level = crate::logging::parse_level(&text).map_err(CliError::Usage)?;
            }
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    crate::logging::init(level);
    let settings = Settings {
        gossip,
        seed: seed.unwrap_or_else(|| fastrand::u64(..)),
    };
    maelstrom::run(settings).map_err(|e| CliError::Failed(format!("maelstrom: {e}")))
}

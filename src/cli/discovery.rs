//! `gctr discovery`: its options and start-up. Runs the discovery server until SIGINT
//! or SIGTERM.

use super::CliError;
use crate::discovery::server::{DiscoveryServer, ServerConfig};
use crate::logging;
use log::LevelFilter;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const USAGE: &str = "\
Usage: gctr discovery [OPTIONS]

Runs the discovery server that nodes register with and learn their peers from.

Options:
  --port PORT          port to listen on [default: 8000]
  --bind ADDR          IP address to listen on [default: 127.0.0.1]
  --ttl DUR            drop a member not heard from for this long, e.g. 5s, 500ms
                       [default: 5s]
  --max-members N      refuse new members past this many [default: 10000]
  --http-read-timeout DUR
                       a client silent this long in the middle of a request (headers
                       or body) gets an error and is disconnected [default: 15s]
  --log-level LEVEL    off, error, warn, info, debug, trace [default: info]
  -h, --help           print this help

API (JSON): POST /register, POST /heartbeat {\"name\",\"addr\",\"http\"};
POST /deregister {\"name\"}; GET /peers; GET /health.
";

struct Options {
    addr: SocketAddr,
    config: ServerConfig,
    log_level: LevelFilter,
}

pub fn run(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    let Some(options) = parse(parser)? else {
        print!("{USAGE}");
        return Ok(());
    };
    logging::init(options.log_level);
    let server =
        DiscoveryServer::bind(options.addr, options.config.clone()).map_err(CliError::Failed)?;
    let stop = server.stop_handle();
    ctrlc::set_handler(move || stop.stop())
        .map_err(|e| CliError::Failed(format!("cannot install the signal handler: {e}")))?;
    println!("discovery listening on http://{}", server.local_addr());
    let _ = std::io::stdout().flush();
    log::info!(
        "discovery on {} (ttl {}, at most {} members)",
        server.local_addr(),
        humantime::format_duration(options.config.ttl),
        options.config.max_members
    );
    server.run();
    Ok(())
}

/// The options, or None when help was asked for.
fn parse(parser: &mut lexopt::Parser) -> Result<Option<Options>, CliError> {
    use lexopt::prelude::*;
    let mut port: u16 = 8000;
    let mut bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = ServerConfig::default();
    let mut log_level = LevelFilter::Info;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("port") => port = parser.value()?.parse()?,
            Long("bind") => bind = parser.value()?.parse()?,
            Long("ttl") => {
                let text = parser.value()?.string()?;
                config.ttl = humantime::parse_duration(&text)
                    .map_err(|e| CliError::Usage(format!("--ttl {text:?}: {e}")))?;
                if config.ttl.is_zero() {
                    return Err(CliError::Usage("--ttl must be above zero".into()));
                }
            }
            Long("http-read-timeout") => {
                let text = parser.value()?.string()?;
                config.read_timeout = super::positive_duration("--http-read-timeout", &text)?;
            }
            Long("max-members") => {
                config.max_members = parser.value()?.parse()?;
                if config.max_members == 0 {
                    return Err(CliError::Usage("--max-members must be at least 1".into()));
                }
            }
            Long("log-level") => {
                log_level =
                    logging::parse_level(&parser.value()?.string()?).map_err(CliError::Usage)?;
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Some(Options {
        addr: SocketAddr::new(bind, port),
        config,
        log_level,
    }))
}

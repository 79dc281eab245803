//! `gctr discovery`: its options and start-up. Runs the discovery server until SIGINT
//! or SIGTERM.

use super::env;
use super::flags::{self, FlagHelp};
use super::security::SecurityFlags;
use super::CliError;
use crate::discovery::registry::DEFAULT_MAX_MEMBERS;
use crate::discovery::server::DEFAULT_DISCOVERY_CONNECTIONS;
use crate::discovery::server::{DiscoveryServer, ServerConfig, DEFAULT_TTL};
use crate::http::server::DEFAULT_READ_TIMEOUT;
use crate::logging::{self, LogFormat};
use log::LevelFilter;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The port `--port` defaults to.
pub const DEFAULT_PORT: u16 = 8000;

fn options() -> Vec<FlagHelp> {
    [
        FlagHelp::with_default("--port PORT", "port to listen on", DEFAULT_PORT),
        FlagHelp::with_default(
            "--bind ADDR",
            "IP address to listen on",
            Ipv4Addr::LOCALHOST,
        ),
        FlagHelp::with_default(
            "--ttl DUR",
            "drop a member not heard from for this long, e.g. 5s, 500ms",
            flags::show_duration(DEFAULT_TTL),
        ),
        FlagHelp::with_default(
            "--max-members N",
            "refuse new members past this many",
            DEFAULT_MAX_MEMBERS,
        ),
        FlagHelp::with_default(
            "--http-read-timeout DUR",
            "a client silent this long in the middle of a request (headers or body) gets an \
             error and is disconnected",
            flags::show_duration(DEFAULT_READ_TIMEOUT),
        ),
        FlagHelp::with_default(
            "--http-max-connections N",
            "most HTTP connections open at once (every node keeps one open); one more is \
             answered 503 and closed",
            DEFAULT_DISCOVERY_CONNECTIONS,
        ),
    ]
    .into_iter()
    .chain(SecurityFlags::help(false))
    .chain([
        flags::log_level_help(),
        flags::log_format_help(),
        FlagHelp::new("-h, --help", "print this help"),
    ])
    .collect()
}

fn help() -> String {
    format!(
        "Usage: gctr discovery [OPTIONS]

Runs the discovery server that nodes register with and learn their peers from.

Options:
{}
API (JSON): POST /register, POST /heartbeat {{\"name\",\"addr\",\"http\"}};
POST /deregister {{\"name\"}}; GET /peers; GET /health; GET /status.
GET /metrics: Prometheus metrics.

{}",
        flags::render(&options()),
        env::HELP
    )
}

struct Options {
    addr: SocketAddr,
    config: ServerConfig,
    log_level: LevelFilter,
    log_format: LogFormat,
}

pub fn run(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    let args = env::with_process_env(&options(), parser.raw_args()?.collect())?;
    let Some(options) = parse(&mut lexopt::Parser::from_args(args))? else {
        print!("{}", help());
        return Ok(());
    };
    logging::init_with_format(options.log_level, options.log_format);
    super::open_files::raise_limit();
    // Installed before the server answers, so a SIGTERM that comes as soon as it does
    // (a container stopped right after its health check passed) still stops it cleanly.
    let (signal_tx, signal_rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = signal_tx.try_send(());
    })
    .map_err(|e| CliError::Failed(format!("cannot install the signal handler: {e}")))?;
    let server =
        DiscoveryServer::start(options.addr, options.config.clone()).map_err(CliError::Failed)?;
    let stop = server.stop_handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signal_rx.recv().is_ok() {
                stop.stop();
            }
        })
        .map_err(|e| CliError::Failed(format!("cannot start the signal thread: {e}")))?;
    let scheme = if options.config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("discovery listening on {scheme}://{}", server.local_addr());
    let _ = std::io::stdout().flush();
    log::info!(
        "discovery on {} (ttl {}, at most {} members)",
        server.local_addr(),
        humantime::format_duration(options.config.ttl),
        options.config.max_members
    );
    server.wait();
    Ok(())
}

/// The options, or None when help was asked for.
fn parse(parser: &mut lexopt::Parser) -> Result<Option<Options>, CliError> {
    use lexopt::prelude::*;
    let mut port: u16 = DEFAULT_PORT;
    let mut bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = ServerConfig::default();
    let mut log_level = LevelFilter::Info;
    let mut log_format = LogFormat::Text;
    let mut security = SecurityFlags::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("port") => port = parser.value()?.parse()?,
            Long("bind") => bind = parser.value()?.parse()?,
            Long("ttl") => {
                let text = parser.value()?.string()?;
                config.ttl = flags::duration("--ttl", &text, Duration::ZERO)?;
            }
            Long("http-read-timeout") => {
                let text = parser.value()?.string()?;
                config.http.read_timeout =
                    flags::duration("--http-read-timeout", &text, Duration::ZERO)?;
            }
            Long("http-max-connections") => {
                let text = parser.value()?.string()?;
                config.http.max_connections =
                    flags::number("--http-max-connections", &text, 1..=1 << 20)?;
            }
            Long("max-members") => {
                let text = parser.value()?.string()?;
                config.max_members = flags::number("--max-members", &text, 1..=usize::MAX)?;
            }
            Long(flag) if SecurityFlags::is_flag(flag) => {
                let flag = flag.to_owned();
                security.take(&flag, parser)?;
            }
            Long("log-level") => log_level = flags::log_level(&parser.value()?.string()?)?,
            Long("log-format") => log_format = flags::log_format(&parser.value()?.string()?)?,
            _ => return Err(arg.unexpected().into()),
        }
    }
    security.finish(&mut config.http)?;
    Ok(Some(Options {
        addr: SocketAddr::new(bind, port),
        config,
        log_level,
        log_format,
    }))
}

//! `gctr node`: its options, start-up, and clean stop on SIGINT/SIGTERM.

use super::env;
use super::flags::{self, FlagHelp, GossipFlags};
use super::node_membership::{self, MembershipFlags};
use super::node_wal::{self, Opened, WalDir, WalFlags};
use super::security::{DiscoveryCredentialFlags, SecurityFlags};
use super::CliError;
use crate::codec::MAX_ADDR_BYTES;
use crate::crdt::{validate_node_name, State};
use crate::discovery::client::DEFAULT_HEARTBEAT_INTERVAL;
use crate::http::server::{DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT};
use crate::http::Credentials;
use crate::node::config::DEFAULT_MAX_COUNTERS;
use crate::node::discovery_feed::join_discovery;
use crate::node::{fresh_origin, KeyringConfig, Node, NodeConfig};
use crate::node_core::{
    MemoryStorage, DEFAULT_COMPACT_AFTER, DEFAULT_KEY_WINDOW, DEFAULT_MAX_KEYS,
    DEFAULT_RETIRE_AFTER,
};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Added to the gossip port to make the HTTP port when `--http` is not given.
pub const HTTP_PORT_OFFSET: u16 = 10;

/// The help entries of every option, in three groups: general, membership, durability.
fn option_groups() -> [Vec<FlagHelp>; 3] {
    let options = [
        FlagHelp::new(
            "--discovery URL",
            "register with this discovery server (e.g. http://127.0.0.1:8000) and join through \
             the members it lists; without it the node uses no discovery",
        ),
        FlagHelp::with_default(
            "--heartbeat-interval DUR",
            "time between heartbeats to discovery, each also refreshing the peer list; keep it \
             well below discovery's --ttl",
            flags::show_duration(DEFAULT_HEARTBEAT_INTERVAL),
        ),
    ]
    .into_iter()
    .chain(DiscoveryCredentialFlags::help());
    let more = [
        FlagHelp::with_default(
            "--max-counters N",
            "most counters writes to this node may create; a write that would create one more \
             is refused with 507 (counters learned from peers are always kept)",
            DEFAULT_MAX_COUNTERS,
        ),
        FlagHelp::with_default(
            "--idempotency-window DUR",
            "how long an idempotency key (Idempotency-Key, `gctr inc --id`) is remembered: a \
             retry within it counts once on any node; after it, the key counts again",
            flags::show_duration(DEFAULT_KEY_WINDOW),
        ),
        FlagHelp::with_default(
            "--retire-after DUR",
            "retire the origins (data incarnations) of a member gone this long: dead, left, \
             forgotten or restarted without its data; their totals move into each counter's \
             retired sum, so values never change and live origins stay about one per member \
             (an origin that took idempotency keys waits for them to resolve and pass \
             --idempotency-window too); `off` never retires",
            flags::show_duration(DEFAULT_RETIRE_AFTER),
        ),
        FlagHelp::with_default(
            "--compact-after DUR",
            "compact an origin retired this long: its tombstone's per-counter entries go, \
             their totals stay in each counter's compacted sum, so memory stops growing \
             with every origin that ever wrote; a replica away longer than --retire-after \
             plus this is refused the origins compacted meanwhile (wipe and rejoin it); \
             `off` keeps tombstones for good",
            flags::show_duration(DEFAULT_COMPACT_AFTER),
        ),
        FlagHelp::with_default(
            "--max-keys N",
            "most idempotency keys this node holds; a keyed write with a new key beyond it is \
             refused with 503 (keys are never evicted within their window)",
            DEFAULT_MAX_KEYS,
        ),
        FlagHelp::with_default(
            "--keyring FILE",
            "encrypt and authenticate all gossip with the keys in FILE (one base64 key a line, \
             the first is the primary; `gctr keygen` makes one); the node rewrites FILE when \
             `gctr keys` changes the keyring, so it must be writable",
            "off",
        ),
        FlagHelp::new(
            "--keyring-transition",
            "with --keyring, for turning encryption on in a running cluster: also accept \
             plaintext gossip and send it to nodes without a keyring, until `gctr keys \
             enforce`; ignored once the keyring file records that encryption was enforced",
        ),
        FlagHelp::with_default(
            "--http-read-timeout DUR",
            "an HTTP client silent this long in the middle of a request (headers or body) gets \
             an error and is disconnected",
            flags::show_duration(DEFAULT_READ_TIMEOUT),
        ),
        FlagHelp::with_default(
            "--http-max-connections N",
            "most HTTP connections open at once; one more is answered 503 and closed",
            DEFAULT_MAX_CONNECTIONS,
        ),
        flags::log_level_help(),
        flags::log_format_help(),
        FlagHelp::new("-h, --help", "show this help"),
    ];
    let general = AddressFlags::help()
        .into_iter()
        .chain(options)
        .chain(GossipFlags::help())
        .chain(SecurityFlags::help(true))
        .chain(more)
        .collect();
    [general, node_membership::help(), node_wal::help()]
}

fn help() -> String {
    let [general, membership, durability] = option_groups();
    format!(
        "gctr node: run a node

Usage: gctr node --addr HOST:PORT [OPTIONS]

Options:
{}
Without --wal the node keeps its state in memory only and starts under a new
incarnation every time. Prints one line `gctr node NAME gossip ADDR http ADDR` on stdout
(followed by ` redis ADDR` with --redis) once it is serving. Gossip uses TCP on --addr,
membership probes UDP on the same port. Stops cleanly on SIGINT or SIGTERM (exit 0):
the members are told it left, and it deregisters from discovery. Seeds, discovery, LAN discovery and `gctr join` are all
ways in; membership (SWIM) spreads the rest.

Membership options:
{}
Durability options:
{}
{}",
        flags::render(&general),
        flags::render(&membership),
        flags::render(&durability),
        env::HELP,
    )
}

pub fn run(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    let all: Vec<FlagHelp> = option_groups().into_iter().flatten().collect();
    let args = env::with_process_env(&all, parser.raw_args()?.collect())?;
    let Some(options) = parse(&mut lexopt::Parser::from_args(args))? else {
        print!("{}", help());
        return Ok(());
    };
    crate::logging::init_with_format(options.log_level, options.log_format);
    super::open_files::raise_limit();
    let mut config = options.config;
    if let Some(host) = &options.advertise {
        config.advertise = Some(resolve_host(host, config.gossip_addr.ip())?);
    }
    let opened = match options.wal {
        Some(wal) => node_wal::open(wal, &config.name, options.name_given)?,
        None => Opened {
            storage: Box::new(MemoryStorage),
            origin: fresh_origin(&config.name),
            state: State::new(),
            fence: None,
        },
    };
    let Opened {
        storage,
        origin,
        state,
        fence,
    } = opened;
    config.name.clone_from(&origin.node);
    config.discovery = options.discovery.is_some();
    // Without a way to find members at start-up there is no one to ask.
    config.fence = fence.filter(|_| config.finds_members());
    // Installed before the node serves, so a SIGTERM that comes as soon as it answers
    // still stops it cleanly.
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .map_err(|e| CliError::Failed(format!("cannot install the signal handler: {e}")))?;
    let node =
        Node::start(config, storage, origin, state).map_err(|e| CliError::Failed(e.to_string()))?;
    let redis = node
        .redis_addr()
        .map_or_else(String::new, |addr| format!(" redis {addr}"));
    println!(
        "gctr node {} gossip {} http {}{redis}",
        node.name(),
        node.gossip_addr(),
        node.http_addr()
    );
    let discovery = match &options.discovery {
        Some(d) => Some(
            join_discovery(&node, &d.url, d.heartbeat_interval, d.credentials.clone())
                .map_err(|e| CliError::Failed(format!("cannot start the discovery client: {e}")))?,
        ),
        None => None,
    };
    let _ = std::io::stdout().flush();
    let _ = stop_rx.recv();
    log::info!("stopping");
    if let Some(discovery) = discovery {
        discovery.stop();
    }
    node.stop();
    Ok(())
}

struct Options {
    config: NodeConfig,
    discovery: Option<DiscoveryOptions>,
    log_level: log::LevelFilter,
    log_format: crate::logging::LogFormat,
    /// `--advertise`, resolved when the node starts.
    advertise: Option<String>,
    /// `--name` was given (a WAL directory's own name is used otherwise).
    name_given: bool,
    wal: Option<WalDir>,
}

struct DiscoveryOptions {
    url: String,
    heartbeat_interval: Duration,
    credentials: Credentials,
}

/// The discovery flags as given.
struct DiscoveryFlags {
    url: Option<String>,
    heartbeat_interval: Option<Duration>,
    credentials: DiscoveryCredentialFlags,
}

/// Parses the options; `None` means `--help` was asked for.
fn parse(parser: &mut lexopt::Parser) -> Result<Option<Options>, CliError> {
    use lexopt::prelude::*;
    let mut addresses = AddressFlags::default();
    let mut gossip = GossipFlags::default();
    let mut discovery_url: Option<String> = None;
    let mut heartbeat_interval: Option<Duration> = None;
    let mut limits = NodeLimitFlags::default();
    let mut log_level = log::LevelFilter::Info;
    let mut log_format = crate::logging::LogFormat::Text;
    let mut wal = WalFlags::default();
    let mut membership = MembershipFlags::default();
    let mut security = SecurityFlags::default();
    let mut discovery_credentials = DiscoveryCredentialFlags::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long(flag) if AddressFlags::is_flag(flag) => {
                let flag = flag.to_owned();
                addresses.take(&flag, parser)?;
            }
            Long("discovery") => discovery_url = Some(parser.value()?.string()?),
            Long("heartbeat-interval") => {
                let v = parser.value()?.string()?;
                heartbeat_interval =
                    Some(flags::duration("--heartbeat-interval", &v, Duration::ZERO)?);
            }
            Long(flag) if NodeLimitFlags::is_flag(flag) => {
                let flag = flag.to_owned();
                limits.take(&flag, parser)?;
            }
            Long("log-level") => log_level = flags::log_level(&parser.value()?.string()?)?,
            Long("log-format") => log_format = flags::log_format(&parser.value()?.string()?)?,
            Long(flag) if node_wal::is_flag(flag) => {
                let flag = flag.to_owned();
                wal.take(&flag, parser)?;
            }
            Long(flag) if SecurityFlags::is_flag(flag) => {
                let flag = flag.to_owned();
                security.take(&flag, parser)?;
            }
            Long(flag) if DiscoveryCredentialFlags::is_flag(flag) => {
                let flag = flag.to_owned();
                discovery_credentials.take(&flag, parser)?;
            }
            Long(flag) if node_membership::is_flag(flag) => {
                let flag = flag.to_owned();
                membership.take(&flag, parser)?;
            }
            Long(flag) => {
                let flag = flag.to_owned();
                if !gossip.take(&flag, parser)? {
                    return Err(usage(format!("invalid option '--{flag}'")));
                }
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let wal = wal.finish()?;
    let advertise = addresses.advertise.clone();
    let (mut config, name_given) = addresses.finish()?;
    config.engine = gossip.finish();
    (config.membership, config.lan) = membership.finish()?;
    limits.finish(&mut config)?;
    security.finish(&mut config.http)?;
    let discovery = DiscoveryFlags {
        url: discovery_url,
        heartbeat_interval,
        credentials: discovery_credentials,
    };
    let reachable = Reachable {
        name_given,
        advertised: advertise.is_some(),
    };
    let discovery = discovery_options(discovery, &config, reachable)?;
    Ok(Some(Options {
        config,
        discovery,
        log_level,
        log_format,
        advertise,
        name_given,
        wal,
    }))
}

/// The node's own settings given one flag each: HTTP read timeout, counter and key
/// limits, the idempotency-key window and keyring.
#[derive(Default)]
struct NodeLimitFlags {
    http_read_timeout: Option<Duration>,
    http_max_connections: Option<usize>,
    max_counters: Option<usize>,
    max_keys: Option<usize>,
    key_window: Option<Duration>,
    /// `Some(None)`: `--retire-after off`.
    retire_after: Option<Option<Duration>>,
    /// `Some(None)`: `--compact-after off`.
    compact_after: Option<Option<Duration>>,
    keyring: Option<std::path::PathBuf>,
    transition: bool,
}

impl NodeLimitFlags {
    fn is_flag(flag: &str) -> bool {
        matches!(
            flag,
            "http-read-timeout"
                | "http-max-connections"
                | "max-counters"
                | "max-keys"
                | "idempotency-window"
                | "retire-after"
                | "compact-after"
                | "keyring"
                | "keyring-transition"
        )
    }

    fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        use lexopt::ValueExt;
        if flag == "keyring-transition" {
            self.transition = true;
            return Ok(());
        }
        let v = parser.value()?.string()?;
        match flag {
            "http-read-timeout" => {
                self.http_read_timeout =
                    Some(flags::duration("--http-read-timeout", &v, Duration::ZERO)?);
            }
            "http-max-connections" => {
                self.http_max_connections =
                    Some(flags::number("--http-max-connections", &v, 1..=1 << 20)?);
            }
            "max-counters" => {
                self.max_counters =
                    Some(flags::number("--max-counters", &v, 1..=u32::MAX as usize)?);
            }
            "max-keys" => {
                self.max_keys = Some(flags::number("--max-keys", &v, 1..=u32::MAX as usize)?);
            }
            "idempotency-window" => {
                self.key_window = Some(flags::duration(
                    "--idempotency-window",
                    &v,
                    Duration::from_secs(1),
                )?);
            }
            "retire-after" if v == "off" => self.retire_after = Some(None),
            "retire-after" => {
                let after = flags::duration("--retire-after", &v, Duration::from_secs(1))?;
                self.retire_after = Some(Some(after));
            }
            "compact-after" if v == "off" => self.compact_after = Some(None),
            "compact-after" => {
                let after = flags::duration("--compact-after", &v, Duration::from_secs(1))?;
                self.compact_after = Some(Some(after));
            }
            _ => self.keyring = Some(v.into()),
        }
        Ok(())
    }

    fn finish(self, config: &mut NodeConfig) -> Result<(), CliError> {
        if let Some(d) = self.http_read_timeout {
            config.http.read_timeout = d;
        }
        if let Some(n) = self.http_max_connections {
            config.http.max_connections = n;
        }
        config.max_counters = self.max_counters.unwrap_or(DEFAULT_MAX_COUNTERS);
        config.max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        config.key_window = self.key_window.unwrap_or(DEFAULT_KEY_WINDOW);
        config.retire_after = self.retire_after.unwrap_or(Some(DEFAULT_RETIRE_AFTER));
        config.compact_after = self.compact_after.unwrap_or(Some(DEFAULT_COMPACT_AFTER));
        if let Some(after) = config.compact_after.filter(|a| *a < config.key_window) {
            return Err(usage(format!(
                "--compact-after ({}) must be at least --idempotency-window ({}): every \
                 idempotency key an origin accepted must have expired before its entries go",
                flags::show_duration(after),
                flags::show_duration(config.key_window)
            )));
        }
        config.keyring = match (self.keyring, self.transition) {
            (Some(file), transition) => Some(KeyringConfig { file, transition }),
            (None, true) => return Err(usage("--keyring-transition needs --keyring FILE")),
            (None, false) => None,
        };
        Ok(())
    }
}

/// Where the node listens, its name and its seeds, as given.
#[derive(Default)]
struct AddressFlags {
    addr: Option<SocketAddr>,
    http: Option<SocketAddr>,
    redis: Option<SocketAddr>,
    name: Option<String>,
    seeds: Vec<String>,
    advertise: Option<String>,
}

impl AddressFlags {
    fn help() -> [FlagHelp; 6] {
        [
            FlagHelp::new(
                "--addr HOST:PORT",
                "listen for gossip here; peers reach this node at this address unless \
                 --advertise says otherwise (required; an IP address, port 0 picks a free port)",
            ),
            FlagHelp::with_default(
                "--advertise HOST",
                "the host peers and clients are told to reach this node at, with the ports \
                 listened on: an IP address or a DNS name resolved once at start (a container's \
                 own name, so the node can listen on 0.0.0.0)",
                "the --addr and --http addresses",
            ),
            FlagHelp::with_default(
                "--http HOST:PORT",
                "serve the HTTP API here",
                format!("the --addr host, the --addr port + {HTTP_PORT_OFFSET}"),
            ),
            FlagHelp::with_default(
                "--redis HOST:PORT",
                "also serve the Redis protocol (RESP2) here, for redis-cli, redis-benchmark and \
                 Redis client libraries (INCR, INCRBY, DECR, DECRBY, GET, MGET, EXISTS)",
                "off",
            ),
            FlagHelp::with_default(
                "--name NAME",
                "the node's name, unique in the cluster",
                "the --addr value",
            ),
            FlagHelp::new(
                "--seeds ADDR,...",
                "gossip addresses of nodes to join through (repeatable), each HOST:PORT with an IP \
                 or a DNS name (resolved again every 10s, so a headless service or a service name \
                 works); contacted whenever one of them is not a live member",
            ),
        ]
    }

    fn is_flag(flag: &str) -> bool {
        matches!(
            flag,
            "addr" | "http" | "redis" | "name" | "seeds" | "advertise"
        )
    }

    fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        let value = lexopt::ValueExt::string(parser.value()?)?;
        match flag {
            "addr" => self.addr = Some(socket_addr("--addr", value)?),
            "http" => self.http = Some(socket_addr("--http", value)?),
            "redis" => self.redis = Some(socket_addr("--redis", value)?),
            "name" => {
                validate_node_name(&value).map_err(|e| usage(format!("--name: {e}")))?;
                self.name = Some(value);
            }
            "advertise" => {
                if value.is_empty() || value.len() > MAX_ADDR_BYTES {
                    return Err(usage(format!("--advertise {value:?} is not a host")));
                }
                self.advertise = Some(value);
            }
            _ => {
                for seed in value.split(',') {
                    self.seeds.push(seed_addr(seed.trim())?);
                }
            }
        }
        Ok(())
    }

    /// A configuration with these addresses, name and seeds; and whether `--name` was
    /// given.
    fn finish(self) -> Result<(NodeConfig, bool), CliError> {
        let addr = self
            .addr
            .ok_or_else(|| usage("`gctr node` needs --addr HOST:PORT"))?;
        let http = match self.http {
            Some(h) => h,
            None => derive_http(addr)?,
        };
        let mut config = NodeConfig::new(addr, http);
        config.redis_addr = self.redis;
        config.seeds = self.seeds;
        let name_given = self.name.is_some();
        if let Some(n) = self.name {
            config.name = n;
        }
        Ok((config, name_given))
    }
}

/// The discovery settings, checked against the node's: a heartbeat interval or
/// credentials need a URL.
fn discovery_options(
    flags: DiscoveryFlags,
    config: &NodeConfig,
    reachable: Reachable,
) -> Result<Option<DiscoveryOptions>, CliError> {
    match flags.url {
        Some(url) => {
            check_registrable(config, reachable)?;
            Ok(Some(DiscoveryOptions {
                url,
                heartbeat_interval: flags
                    .heartbeat_interval
                    .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL),
                credentials: flags.credentials.finish()?,
            }))
        }
        None if flags.heartbeat_interval.is_some() => {
            Err(usage("--heartbeat-interval needs --discovery URL"))
        }
        None => match flags.credentials.given() {
            Some(flag) => Err(usage(format!("{flag} needs --discovery URL"))),
            None => Ok(None),
        },
    }
}

/// What makes the node's addresses and name fit for discovery besides the addresses.
#[derive(Clone, Copy)]
struct Reachable {
    /// `--name` was given.
    name_given: bool,
    /// `--advertise` was given: peers are told that host, not the listening address.
    advertised: bool,
}

/// Discovery hands this node's addresses to its peers as they are, and tells members
/// apart by name: an unspecified address cannot be dialled (unless `--advertise` names
/// another), and with port 0 the default name (the --addr value) would be the same for
/// every node.
fn check_registrable(config: &NodeConfig, reachable: Reachable) -> Result<(), CliError> {
    let Reachable {
        name_given,
        advertised,
    } = reachable;
    for (flag, addr) in [("--addr", config.gossip_addr), ("--http", config.http_addr)] {
        if addr.ip().is_unspecified() && !advertised {
            return Err(usage(format!(
                "with --discovery, {flag} must be an address peers can reach, not {} (or give \
                 --advertise HOST)",
                addr.ip()
            )));
        }
    }
    if !name_given && config.gossip_addr.port() == 0 {
        return Err(usage("with --discovery and --addr port 0, give --name"));
    }
    Ok(())
}

/// The HTTP address when `--http` is not given: same host, gossip port + 10 (port 0
/// stays 0: both ports are then picked by the system).
fn derive_http(addr: SocketAddr) -> Result<SocketAddr, CliError> {
    let port = match addr.port() {
        0 => 0,
        p => p.checked_add(HTTP_PORT_OFFSET).ok_or_else(|| {
            usage(format!(
                "cannot derive the HTTP port from --addr port {p} (+{HTTP_PORT_OFFSET} overflows); give --http"
            ))
        })?,
    };
    Ok(SocketAddr::new(addr.ip(), port))
}

/// The IP address `host` names (itself when it is one): the first the resolver gives of
/// the same family (IPv4 or IPv6) as `listening`, the address the node listens on.
fn resolve_host(host: &str, listening: IpAddr) -> Result<IpAddr, CliError> {
    let failed = |why: &str| CliError::Failed(format!("--advertise {host:?}: {why}"));
    (host, 0)
        .to_socket_addrs()
        .map_err(|e| failed(&e.to_string()))?
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4() == listening.is_ipv4())
        .ok_or_else(|| failed("no address of the family the node listens on"))
}

fn socket_addr(flag: &str, value: String) -> Result<SocketAddr, CliError> {
    value
        .parse()
        .map_err(|_| usage(format!("{flag} {value:?} is not an IP address with a port")))
}

/// A seed is `host:port` with a valid port; hosts are resolved when connecting.
fn seed_addr(seed: &str) -> Result<String, CliError> {
    let valid = seed.len() <= MAX_ADDR_BYTES
        && seed.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
    if valid {
        Ok(seed.to_owned())
    } else {
        Err(usage(format!("--seeds: {seed:?} is not HOST:PORT")))
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Fanout;

    fn parse_args(args: &[&str]) -> Result<Option<Options>, CliError> {
        let mut parser = lexopt::Parser::from_args(args.iter().copied());
        parse(&mut parser)
    }

    #[test]
    fn http_is_derived_from_addr_and_overflow_is_a_usage_error() {
        let o = parse_args(&["--addr", "127.0.0.1:9000"]).unwrap().unwrap();
        assert_eq!(o.config.http_addr.to_string(), "127.0.0.1:9010");
        assert_eq!(o.config.name, "127.0.0.1:9000");
        assert_eq!(o.config.redis_addr, None);
        let o = parse_args(&["--addr", "127.0.0.1:9000", "--redis", "127.0.0.1:6380"])
            .unwrap()
            .unwrap();
        assert_eq!(o.config.redis_addr, Some("127.0.0.1:6380".parse().unwrap()));
        assert!(matches!(
            parse_args(&["--addr", "127.0.0.1:9000", "--redis", "6380"]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            parse_args(&["--addr", "127.0.0.1:65530"]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn retire_after_takes_a_duration_or_off_and_defaults_to_an_hour() {
        let with = |v: &str| parse_args(&["--addr", "127.0.0.1:1", "--retire-after", v]);
        let after = |v: &str| with(v).unwrap().unwrap().config.retire_after;
        assert_eq!(after("90s"), Some(Duration::from_secs(90)));
        assert_eq!(after("off"), None);
        let d = parse_args(&["--addr", "127.0.0.1:1"]).unwrap().unwrap();
        assert_eq!(d.config.retire_after, Some(Duration::from_secs(3600)));
        for bad in ["0s", "500ms", "soon"] {
            assert!(matches!(with(bad), Err(CliError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn seeds_settings_and_defaults() {
        let o = parse_args(&[
            "--addr",
            "127.0.0.1:1",
            "--seeds",
            "a:1, b:2",
            "--seeds",
            "c:3",
            "--gossip-interval",
            "250ms",
            "--fanout",
            "3",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.config.seeds, vec!["a:1", "b:2", "c:3"]);
        assert_eq!(o.config.engine.gossip_interval, Duration::from_millis(250));
        assert_eq!(o.config.engine.fanout, Fanout::Fixed(3));
        let d = parse_args(&["--addr", "127.0.0.1:1"]).unwrap().unwrap();
        assert_eq!(d.config.engine.gossip_interval, Duration::from_millis(100));
        assert_eq!(d.config.engine.fanout, Fanout::Auto);
        assert_eq!(d.config.engine.peers_per_round(), 1);
        let lazy = parse_args(&["--addr", "127.0.0.1:1", "--no-eager-push"])
            .unwrap()
            .unwrap();
        assert_eq!(lazy.config.engine.peers_per_round(), 2);
        let auto = parse_args(&["--addr", "127.0.0.1:1", "--fanout", "auto"])
            .unwrap()
            .unwrap();
        assert_eq!(auto.config.engine.fanout, Fanout::Auto);
    }

    #[test]
    fn discovery_settings_and_their_checks() {
        let d = parse_args(&["--addr", "127.0.0.1:1"]).unwrap().unwrap();
        assert!(d.discovery.is_none());
        assert_eq!(d.config.http.read_timeout, Duration::from_secs(15));
        let o = parse_args(&[
            "--addr",
            "127.0.0.1:1",
            "--discovery",
            "http://127.0.0.1:8000",
            "--heartbeat-interval",
            "300ms",
            "--http-read-timeout",
            "2s",
        ])
        .unwrap()
        .unwrap();
        let discovery = o.discovery.expect("discovery options");
        assert_eq!(discovery.url, "http://127.0.0.1:8000");
        assert_eq!(discovery.heartbeat_interval, Duration::from_millis(300));
        assert_eq!(o.config.http.read_timeout, Duration::from_secs(2));
        let o = parse_args(&["--addr", "127.0.0.1:1", "--discovery", "d:1"])
            .unwrap()
            .unwrap();
        assert_eq!(
            o.discovery.expect("discovery").heartbeat_interval,
            DEFAULT_HEARTBEAT_INTERVAL
        );
        for args in [
            &["--addr", "127.0.0.1:1", "--heartbeat-interval", "1s"][..],
            &[
                "--addr",
                "127.0.0.1:1",
                "--discovery",
                "d:1",
                "--heartbeat-interval",
                "0s",
            ],
            &["--addr", "127.0.0.1:1", "--http-read-timeout", "0s"],
            &["--addr", "0.0.0.0:1", "--discovery", "d:1"],
            &[
                "--addr",
                "127.0.0.1:1",
                "--http",
                "0.0.0.0:2",
                "--discovery",
                "d:1",
            ],
            &["--addr", "127.0.0.1:0", "--discovery", "d:1"],
        ] {
            assert!(
                matches!(parse_args(args), Err(CliError::Usage(_))),
                "{args:?} was accepted"
            );
        }
        assert!(
            parse_args(&["--addr", "127.0.0.1:0", "--name", "a", "--discovery", "d:1"]).is_ok()
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--addr", "nowhere"][..],
            &[],
            &["--addr", "127.0.0.1:1", "--seeds", "nohost"],
            &["--addr", "127.0.0.1:1", "--fanout", "0"],
            &["--addr", "127.0.0.1:1", "--max-frame", "10"],
            &["--addr", "127.0.0.1:1", "--gossip-interval", "soon"],
            &["--addr", "127.0.0.1:1", "--name", ""],
            &["--addr", "127.0.0.1:1", "--wall", "x"],
            &["--addr", "127.0.0.1:1", "--fsync", "always"],
            &[
                "--addr",
                "127.0.0.1:1",
                "--wal",
                "d",
                "--fsync",
                "sometimes",
            ],
            &[
                "--addr",
                "127.0.0.1:1",
                "--wal",
                "d",
                "--fsync-interval",
                "1s",
            ],
            &["--addr", "127.0.0.1:1", "--wal", "d", "--segment-size", "0"],
            &["--addr", "127.0.0.1:1", "--keyring-transition"],
            &["--addr", "127.0.0.1:1", "--keyring"],
        ] {
            assert!(
                matches!(parse_args(args), Err(CliError::Usage(_))),
                "{args:?} was accepted"
            );
        }
    }

    #[test]
    fn keyring_settings() {
        let o = parse_args(&["--addr", "127.0.0.1:1"]).unwrap().unwrap();
        assert_eq!(o.config.keyring, None);
        let o = parse_args(&[
            "--addr",
            "127.0.0.1:1",
            "--keyring",
            "k",
            "--keyring-transition",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            o.config.keyring,
            Some(KeyringConfig {
                file: "k".into(),
                transition: true
            })
        );
    }

    #[test]
    fn wal_settings_and_defaults() {
        let o = parse_args(&["--addr", "127.0.0.1:1"]).unwrap().unwrap();
        assert!(o.wal.is_none() && !o.name_given);
        let o = parse_args(&["--addr", "127.0.0.1:1", "--wal", "d"])
            .unwrap()
            .unwrap();
        let wal = o.wal.unwrap();
        assert_eq!(wal.dir, std::path::PathBuf::from("d"));
        assert_eq!(wal.config, crate::wal::WalConfig::default());
        let o = parse_args(&[
            "--addr",
            "127.0.0.1:1",
            "--name",
            "n",
            "--wal",
            "d",
            "--fsync",
            "interval",
            "--fsync-interval",
            "5ms",
            "--segment-size",
            "300",
            "--snapshot-records",
            "7",
            "--snapshot-bytes",
            "0",
            "--repair",
        ])
        .unwrap()
        .unwrap();
        assert!(o.name_given);
        let w = o.wal.unwrap().config;
        assert_eq!(
            w.fsync,
            crate::wal::FsyncPolicy::Interval(Duration::from_millis(5))
        );
        assert_eq!(
            (
                w.segment_bytes,
                w.snapshot_records,
                w.snapshot_bytes,
                w.repair
            ),
            (300, 7, 0, true)
        );
    }
}

//! `gctr node`'s membership options: the SWIM settings, and LAN discovery.

use super::flags::{self, FlagHelp};
use super::CliError;
use crate::membership;
use crate::node::lan_discovery::{LanConfig, DEFAULT_CLUSTER, DEFAULT_LAN_PORT};
use lexopt::ValueExt;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The membership options' help entries.
pub fn help() -> Vec<FlagHelp> {
    let d = membership::Config::default();
    vec![
        FlagHelp::with_default(
            "--probe-interval DUR",
            "how often this node probes one member (SWIM); with the timeout and the \
             suspicion multiplier it sets how fast a crash is noticed",
            flags::show_duration(d.probe_interval),
        ),
        FlagHelp::with_default(
            "--probe-timeout DUR",
            "how long a probe waits for its answer before asking others to probe (under \
             half the probe interval)",
            flags::show_duration(d.probe_timeout),
        ),
        FlagHelp::with_default(
            "--indirect-probes N",
            "members asked to probe a member that missed its answer",
            d.indirect_probes,
        ),
        FlagHelp::with_default(
            "--suspicion-mult X",
            "a confirmed suspicion lasts X · max(1, log10 n) probe intervals before the \
             member is declared dead (an unconfirmed one 3 times as long)",
            d.suspicion_min_mult,
        ),
        FlagHelp::with_default(
            "--reap-time DUR",
            "how long dead and left members are kept (listed, contacted now and then) \
             before they are forgotten",
            flags::show_duration(d.reap_time),
        ),
        FlagHelp::new(
            "--lan-discovery",
            "find the other nodes of this cluster on the LAN by UDP broadcast, with no \
             seeds or discovery server",
        ),
        FlagHelp::with_default(
            "--cluster NAME",
            "the cluster name LAN discovery announces and follows; clusters with other \
             names on the same LAN stay apart",
            DEFAULT_CLUSTER,
        ),
        FlagHelp::with_default(
            "--lan-port PORT",
            "the UDP port of LAN discovery",
            DEFAULT_LAN_PORT,
        ),
        FlagHelp::with_default(
            "--lan-broadcast IP",
            "where LAN beacons are sent (a subnet's broadcast address, say)",
            Ipv4Addr::BROADCAST,
        ),
    ]
}

/// The membership options' long names.
const FLAGS: &[&str] = &[
    "probe-interval",
    "probe-timeout",
    "indirect-probes",
    "suspicion-mult",
    "reap-time",
    "lan-discovery",
    "cluster",
    "lan-port",
    "lan-broadcast",
];

/// Whether `flag` (a long option name) is a membership option.
pub fn is_flag(flag: &str) -> bool {
    FLAGS.contains(&flag)
}

/// The membership options as given; [`MembershipFlags::finish`] checks them together.
#[derive(Debug, Default)]
pub struct MembershipFlags {
    config: membership::Config,
    lan: bool,
    lan_config: LanConfig,
    lan_given: bool,
}

impl MembershipFlags {
    /// Takes the membership option `flag` (a long option name) and its value.
    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        if flag == "lan-discovery" {
            self.lan = true;
            return Ok(());
        }
        let v = parser.value()?.string()?;
        let c = &mut self.config;
        match flag {
            "probe-interval" => c.probe_interval = flags::duration("--probe-interval", &v, ms(1))?,
            "probe-timeout" => c.probe_timeout = flags::duration("--probe-timeout", &v, ms(1))?,
            "indirect-probes" => {
                c.indirect_probes = flags::number("--indirect-probes", &v, 0..=16)?
            }
            "suspicion-mult" => {
                c.suspicion_min_mult = v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0 && *x <= 100.0)
                    .ok_or_else(|| {
                        CliError::Usage(format!(
                            "--suspicion-mult must be a number above 0 and at most 100, not {v:?}"
                        ))
                    })?
            }
            "reap-time" => c.reap_time = flags::duration("--reap-time", &v, Duration::ZERO)?,
            "cluster" => {
                if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
                    return Err(CliError::Usage(
                        "--cluster must be 1 to 64 bytes without control characters".into(),
                    ));
                }
                self.lan_given = true;
                self.lan_config.cluster = v;
            }
            "lan-port" => {
                self.lan_given = true;
                self.lan_config.port = flags::number("--lan-port", &v, 1..=u16::MAX)?;
            }
            "lan-broadcast" => {
                self.lan_given = true;
                self.lan_config.broadcast = v.parse().map_err(|_| {
                    CliError::Usage(format!("--lan-broadcast {v:?} is not an IPv4 address"))
                })?;
            }
            other => {
                return Err(CliError::Usage(format!(
                    "--{other} is not a membership option"
                )))
            }
        }
        Ok(())
    }

    /// The membership settings, and LAN discovery's when it is on.
    pub fn finish(self) -> Result<(membership::Config, Option<LanConfig>), CliError> {
        self.config.validate().map_err(CliError::Usage)?;
        if self.lan_given && !self.lan {
            return Err(CliError::Usage(
                "--cluster, --lan-port and --lan-broadcast need --lan-discovery".into(),
            ));
        }
        Ok((self.config, self.lan.then_some(self.lan_config)))
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(membership::Config, Option<LanConfig>), CliError> {
        let mut parser = lexopt::Parser::from_args(args.iter().copied());
        let mut flags = MembershipFlags::default();
        while let Some(arg) = parser.next()? {
            match arg {
                lexopt::Arg::Long(f) => {
                    let f = f.to_owned();
                    flags.take(&f, &mut parser)?;
                }
                other => return Err(other.unexpected().into()),
            }
        }
        flags.finish()
    }

    #[test]
    fn settings_defaults_and_lan_discovery() {
        let (config, lan) = parse(&[]).unwrap();
        assert_eq!(config, membership::Config::default());
        assert!(lan.is_none());
        let (config, lan) = parse(&[
            "--probe-interval",
            "1s",
            "--probe-timeout",
            "300ms",
            "--suspicion-mult",
            "4",
            "--lan-discovery",
            "--cluster",
            "blue",
        ])
        .unwrap();
        assert_eq!(config.probe_interval, Duration::from_secs(1));
        assert_eq!(config.suspicion_min_mult, 4.0);
        assert_eq!(lan.unwrap().cluster, "blue");
    }

    #[test]
    fn inconsistent_or_bad_values_are_usage_errors() {
        for args in [
            &["--probe-interval", "200ms", "--probe-timeout", "150ms"][..],
            &["--probe-interval", "0s"],
            &["--suspicion-mult", "-1"],
            &["--suspicion-mult", "NaN"],
            &["--cluster", "blue"],
            &["--lan-discovery", "--lan-broadcast", "nowhere"],
            &["--lan-discovery", "--cluster", ""],
        ] {
            assert!(
                matches!(parse(args), Err(CliError::Usage(_))),
                "{args:?} was accepted"
            );
        }
    }
}

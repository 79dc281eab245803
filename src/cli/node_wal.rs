//! `gctr node`'s durability options (`--wal DIR` and its settings), and opening the data
//! directory at start-up: the node's origin and state come from what the WAL recovered.

use super::flags::{self, FlagHelp};
use super::CliError;
use crate::crdt::{Origin, State};
use crate::node::wal_storage::describe_recovery;
use crate::node::WalStorage;
use crate::node_core::Storage;
use crate::wal::{FsyncPolicy, Wal, WalConfig, WalError, IDENTITY_FILE, MAX_SEGMENT_BYTES};
use std::path::PathBuf;
use std::time::Duration;

/// Under `--fsync interval` without `--fsync-interval`.
const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(100);
/// How long a node that recovered its state waits for a member to confirm its origin.
pub const DEFAULT_FENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// The durability options' help entries.
pub fn help() -> Vec<FlagHelp> {
    let defaults = WalConfig::default();
    vec![
        FlagHelp::new(
            "--wal DIR",
            "keep a write-ahead log in DIR (created if missing): every acknowledged write \
             survives a crash, and a restart on DIR recovers the node's state and identity. An \
             existing DIR keeps its node name; --name must then match it",
        ),
        FlagHelp::with_default(
            "--fsync POLICY",
            "always, interval or never. Only `always` (one fsync per batch of writes, before \
             they are answered) keeps every acknowledged write through a crash. `interval` and \
             `never` are weaker: acknowledged writes can be lost in a crash or power cut, and \
             after an unclean stop the node restarts under a new incarnation",
            "always",
        ),
        FlagHelp::with_default(
            "--fsync-interval DUR",
            "under `--fsync interval`: fsync at most DUR after a write (checked at every change \
             and every gossip tick, so the lag is the larger of DUR and the gossip interval)",
            flags::show_duration(DEFAULT_FSYNC_INTERVAL),
        ),
        FlagHelp::with_default(
            "--segment-size BYTES",
            &format!("start a new log segment past this size (range 1..={MAX_SEGMENT_BYTES})"),
            defaults.segment_bytes,
        ),
        FlagHelp::with_default(
            "--snapshot-records N",
            "write a snapshot after N records (0: never by count)",
            defaults.snapshot_records,
        ),
        FlagHelp::with_default(
            "--snapshot-bytes BYTES",
            "... or after BYTES of records (0: never by size)",
            defaults.snapshot_bytes,
        ),
        FlagHelp::with_default(
            "--fence-timeout DUR",
            "after recovering an existing DIR, a node with seeds, discovery or LAN discovery \
             answers writes 503 until a live member's digest shows that no other process holds \
             its origin beyond its log (a restored backup, a copied DIR), at most this long; 0 \
             turns the check off",
            flags::show_duration(DEFAULT_FENCE_TIMEOUT),
        ),
        FlagHelp::new(
            "--repair",
            "start even if the log is corrupt: keep every record before the bad one, set the \
             rest aside (renamed, not deleted), and take a new incarnation. Without it the node \
             refuses to start on corruption (exit 1, naming the file and offset). A torn last \
             record (a crash mid-write) is always cut, with a copy kept, and logged",
        ),
    ]
}

/// The durability options as given; [`WalFlags::finish`] checks them together.
#[derive(Debug, Default)]
pub struct WalFlags {
    dir: Option<PathBuf>,
    fsync: Option<String>,
    fsync_interval: Option<Duration>,
    segment_bytes: Option<u64>,
    snapshot_records: Option<u64>,
    snapshot_bytes: Option<u64>,
    fence_timeout: Option<Duration>,
    repair: bool,
}

/// Where and how to keep the log.
#[derive(Debug, PartialEq, Eq)]
pub struct WalDir {
    pub dir: PathBuf,
    pub config: WalConfig,
    /// How long to hold writes after recovering an existing directory (zero: not at all).
    pub fence_timeout: Duration,
}

/// A data directory opened and recovered.
pub struct Opened {
    pub storage: Box<dyn Storage>,
    /// The origin to run under, and the state recovered.
    pub origin: Origin,
    pub state: State,
    /// How long to hold writes until a member confirms the origin: set when the state
    /// was recovered from an existing directory.
    pub fence: Option<Duration>,
}

/// The durability options' long names.
const FLAGS: &[&str] = &[
    "wal",
    "fsync",
    "fsync-interval",
    "segment-size",
    "snapshot-records",
    "snapshot-bytes",
    "fence-timeout",
    "repair",
];

/// Whether `flag` (a long option name) is a durability option.
pub fn is_flag(flag: &str) -> bool {
    FLAGS.contains(&flag)
}

impl WalFlags {
    /// Takes the durability option `flag` (a long option name) and its value.
    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        use lexopt::prelude::*;
        match flag {
            "wal" => self.dir = Some(PathBuf::from(parser.value()?)),
            "fsync" => self.fsync = Some(parser.value()?.string()?),
            "fsync-interval" => {
                let v = parser.value()?.string()?;
                self.fsync_interval =
                    Some(flags::duration("--fsync-interval", &v, Duration::ZERO)?);
            }
            "segment-size" => {
                let v = parser.value()?.string()?;
                self.segment_bytes =
                    Some(flags::number("--segment-size", &v, 1..=MAX_SEGMENT_BYTES)?);
            }
            "snapshot-records" => {
                let v = parser.value()?.string()?;
                self.snapshot_records =
                    Some(flags::number("--snapshot-records", &v, 0..=u64::MAX)?);
            }
            "snapshot-bytes" => {
                let v = parser.value()?.string()?;
                self.snapshot_bytes = Some(flags::number("--snapshot-bytes", &v, 0..=u64::MAX)?);
            }
            "fence-timeout" => {
                let v = parser.value()?.string()?;
                self.fence_timeout = Some(flags::duration("--fence-timeout", &v, Duration::ZERO)?);
            }
            "repair" => self.repair = true,
            _ => return Err(usage(format!("--{flag} is not a durability option"))),
        }
        Ok(())
    }

    /// The settings, `None` without `--wal`; a durability setting without `--wal` is a
    /// usage error rather than silently ignored.
    pub fn finish(self) -> Result<Option<WalDir>, CliError> {
        let Some(dir) = self.dir else {
            let given = self.fsync.is_some()
                || self.fsync_interval.is_some()
                || self.segment_bytes.is_some()
                || self.snapshot_records.is_some()
                || self.snapshot_bytes.is_some()
                || self.fence_timeout.is_some()
                || self.repair;
            if given {
                return Err(usage("the durability options need --wal DIR"));
            }
            return Ok(None);
        };
        let fsync = match self.fsync.as_deref().unwrap_or("always") {
            "always" => FsyncPolicy::Always,
            "interval" => {
                FsyncPolicy::Interval(self.fsync_interval.unwrap_or(DEFAULT_FSYNC_INTERVAL))
            }
            "never" => FsyncPolicy::Never,
            other => {
                return Err(usage(format!(
                    "--fsync {other:?}: expected always, interval or never"
                )))
            }
        };
        if self.fsync_interval.is_some() && !matches!(fsync, FsyncPolicy::Interval(_)) {
            return Err(usage("--fsync-interval needs --fsync interval"));
        }
        let defaults = WalConfig::default();
        let config = WalConfig {
            node_name: None,
            fsync,
            segment_bytes: self.segment_bytes.unwrap_or(defaults.segment_bytes),
            snapshot_records: self.snapshot_records.unwrap_or(defaults.snapshot_records),
            snapshot_bytes: self.snapshot_bytes.unwrap_or(defaults.snapshot_bytes),
            repair: self.repair,
            preallocate: defaults.preallocate,
        };
        Ok(Some(WalDir {
            dir,
            config,
            fence_timeout: self.fence_timeout.unwrap_or(DEFAULT_FENCE_TIMEOUT),
        }))
    }
}

/// Opens the data directory and recovers from it. `name` is the node's name and
/// `name_given` whether it came from `--name`: a given name must match an existing
/// directory's, and a default name is used only for a new directory.
pub fn open(wal_dir: WalDir, name: &str, name_given: bool) -> Result<Opened, CliError> {
    let WalDir {
        dir,
        mut config,
        fence_timeout,
    } = wal_dir;
    if name_given || !dir.join(IDENTITY_FILE).exists() {
        config.node_name = Some(name.to_owned());
    }
    let (wal, recovered) = Wal::open(&dir, config).map_err(|e| match e {
        WalError::Corruption { .. } => CliError::Failed(format!(
            "{e}\nhint: `gctr node --repair` keeps every record before the bad one, sets the \
             rest aside (renamed, not deleted) and starts under a new incarnation"
        )),
        other => CliError::Failed(format!("cannot open the WAL in {}: {other}", dir.display())),
    })?;
    let origin = recovered.origin;
    let report = recovered.report;
    let mut lines = describe_recovery(&origin.to_string(), &report).into_iter();
    if let Some(summary) = lines.next() {
        log::info!("{summary}");
    }
    for notes in lines {
        log::warn!("{notes}");
    }
    let fence = (!report.created && !fence_timeout.is_zero()).then_some(fence_timeout);
    Ok(Opened {
        storage: Box::new(
            WalStorage::new(wal, report)
                .map_err(|e| CliError::Failed(format!("cannot start the WAL thread: {e}")))?,
        ),
        origin,
        state: recovered.state,
        fence,
    })
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

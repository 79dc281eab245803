//! Logging to stderr: one line per meaningful event, `LEVEL target: message`, with a
//! level chosen on the command line. A tiny `log` backend, so every module logs through
//! the `log` macros and tests can run quiet.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::str::FromStr;

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let target = record
            .target()
            .strip_prefix("gctr::")
            .unwrap_or(record.target());
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{level} {target}: {}", record.args());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Parses a level name: off, error, warn, info, debug, trace.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    LevelFilter::from_str(s)
        .map_err(|_| format!("unknown log level {s:?} (off, error, warn, info, debug, trace)"))
}

/// Installs the stderr logger at `level`. Later calls only change the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

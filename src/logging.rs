//! Logging to stderr: one line per meaningful event, with a level chosen on the command
//! line, as text (`LEVEL target: message`) or as JSON (one object a line: `time`,
//! `level`, `target`, `message`) for log collectors. A tiny `log` backend, so every
//! module logs through the `log` macros and tests can run quiet.

use log::{Level, LevelFilter, Log, Metadata, Record};
use serde::Serialize;
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

/// How each log line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `LEVEL target: message`.
    #[default]
    Text,
    /// `{"time":"2026-01-02T03:04:05.678Z","level":"info","target":"node","message":"..."}`.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format {s:?} (text, json)")),
        }
    }
}

struct StderrLogger {
    json: AtomicBool,
}

/// One JSON log line.
#[derive(Serialize)]
struct JsonLine<'a> {
    /// RFC 3339, UTC, milliseconds.
    time: String,
    level: &'static str,
    target: &'a str,
    message: String,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.json.load(Ordering::Relaxed) {
            json_line(record, SystemTime::now())
        } else {
            text_line(record)
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn flush(&self) {}
}

/// The module path without the crate's own prefix.
fn target<'a>(record: &Record<'a>) -> &'a str {
    let target = record.target();
    target.strip_prefix("gctr::").unwrap_or(target)
}

fn text_line(record: &Record) -> String {
    let level = match record.level() {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    };
    format!("{level} {}: {}", target(record), record.args())
}

fn json_line(record: &Record, now: SystemTime) -> String {
    let line = JsonLine {
        time: humantime::format_rfc3339_millis(now).to_string(),
        level: match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        },
        target: target(record),
        message: record.args().to_string(),
    };
    serde_json::to_string(&line).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

static LOGGER: StderrLogger = StderrLogger {
    json: AtomicBool::new(false),
};

/// Parses a level name: off, error, warn, info, debug, trace.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    LevelFilter::from_str(s)
        .map_err(|_| format!("unknown log level {s:?} (off, error, warn, info, debug, trace)"))
}

/// Installs the stderr logger at `level`, writing text. Later calls only change the
/// level.
pub fn init(level: LevelFilter) {
    init_with_format(level, LogFormat::Text);
}

/// Installs the stderr logger at `level`, writing lines in `format`. Later calls change
/// the level and the format.
pub fn init_with_format(level: LevelFilter, format: LogFormat) {
    LOGGER
        .json
        .store(format == LogFormat::Json, Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_json_line_is_one_object_with_time_level_target_and_message() {
        let args = format_args!("peer \"b\" is\nunreachable");
        let record = Record::builder()
            .args(args)
            .level(Level::Warn)
            .target("gctr::node::event_loop")
            .build();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let line = json_line(&record, at);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["target"], "node::event_loop");
        assert_eq!(v["message"], "peer \"b\" is\nunreachable");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn formats_are_named_text_and_json() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}

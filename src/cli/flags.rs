//! What several subcommands share on the command line: one parser per kind of value
//! (durations, log levels, numbers in a range), the gossip flags of `node` and
//! `maelstrom`, and help text made from the same constants the code uses, so a default
//! is written once.

use super::CliError;
use crate::codec::{DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT};
use crate::engine::{self, Fanout, DEFAULT_GOSSIP_INTERVAL, MIN_PAYLOAD};
use crate::logging::LogFormat;
use crate::push::{self, PushWindow};
use lexopt::ValueExt;
use log::LevelFilter;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

/// Width of the flag column in help text.
const FLAG_COLUMN: usize = 25;
/// Help lines wrap before this column.
const WIDTH: usize = 88;

/// One flag's entry in a help text: the flag as typed (`--fanout N`) and what it does,
/// its default included.
pub struct FlagHelp {
    pub flag: &'static str,
    pub help: String,
    /// Shown after the help as `[default: ...]`, never broken across lines.
    pub default: Option<String>,
}

impl FlagHelp {
    pub fn new(flag: &'static str, help: impl Into<String>) -> FlagHelp {
        FlagHelp {
            flag,
            help: help.into(),
            default: None,
        }
    }

    /// `help` followed by `[default: DEFAULT]`.
    pub fn with_default(flag: &'static str, help: &str, default: impl Display) -> FlagHelp {
        FlagHelp {
            default: Some(format!("[default: {default}]")),
            ..FlagHelp::new(flag, help)
        }
    }
}

/// Renders flags in two columns, the help wrapped at word boundaries.
pub fn render(flags: &[FlagHelp]) -> String {
    let mut out = String::new();
    for f in flags {
        let words = f.help.split_whitespace().chain(f.default.as_deref());
        let mut lines = wrap(words, WIDTH - FLAG_COLUMN - 2).into_iter();
        let first = lines.next().unwrap_or_default();
        if f.flag.len() < FLAG_COLUMN {
            out.push_str(&format!("  {:FLAG_COLUMN$}{first}\n", f.flag));
        } else {
            out.push_str(&format!("  {}\n  {:FLAG_COLUMN$}{first}\n", f.flag, ""));
        }
        for line in lines {
            out.push_str(&format!("  {:FLAG_COLUMN$}{line}\n", ""));
        }
    }
    out
}

fn wrap<'a>(words: impl Iterator<Item = &'a str>, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in words {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A duration written like `100ms`, `1s` or `2m`, given to `flag`, at least `min`.
pub fn duration(flag: &str, text: &str, min: Duration) -> Result<Duration, CliError> {
    let d = humantime::parse_duration(text)
        .map_err(|e| CliError::Usage(format!("{flag} {text:?}: {e}")))?;
    if d > MAX_DURATION {
        return Err(CliError::Usage(format!(
            "{flag} must be at most {}, not {text:?}",
            show_duration(MAX_DURATION)
        )));
    }
    if d < min.max(Duration::from_nanos(1)) {
        let bound = if min <= Duration::from_nanos(1) {
            "above zero".to_owned()
        } else {
            format!("at least {}", show_duration(min))
        };
        return Err(CliError::Usage(format!("{flag} must be {bound}")));
    }
    Ok(d)
}

/// The longest duration any flag takes: a century is "never" for every setting, and
/// arithmetic on durations up to it cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000);

/// A number given to `flag`, within `range`.
pub fn number<T>(flag: &str, text: &str, range: RangeInclusive<T>) -> Result<T, CliError>
where
    T: std::str::FromStr + PartialOrd + Display,
{
    let out_of_range = || {
        CliError::Usage(format!(
            "{flag} must be a whole number from {} to {}, not {text:?}",
            range.start(),
            range.end()
        ))
    };
    let n: T = text.parse().map_err(|_| out_of_range())?;
    if !range.contains(&n) {
        return Err(out_of_range());
    }
    Ok(n)
}

/// A duration as help text and messages show it (`100ms`, `1s`).
pub fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The level `--log-level` names.
pub fn log_level(text: &str) -> Result<LevelFilter, CliError> {
    crate::logging::parse_level(text).map_err(|e| CliError::Usage(format!("--log-level: {e}")))
}

/// `--log-level`'s help entry.
pub fn log_level_help() -> FlagHelp {
    FlagHelp::with_default(
        "--log-level LEVEL",
        "off, error, warn, info, debug or trace (on stderr)",
        "info",
    )
}

/// The format `--log-format` names.
pub fn log_format(text: &str) -> Result<LogFormat, CliError> {
    text.parse()
        .map_err(|e| CliError::Usage(format!("--log-format: {e}")))
}

/// `--log-format`'s help entry.
pub fn log_format_help() -> FlagHelp {
    FlagHelp::with_default(
        "--log-format FORMAT",
        "text (LEVEL target: message) or json (one object a line: time, level, target, \
         message)",
        "text",
    )
}

/// The most peers per anti-entropy round `--fanout` takes.
const MAX_FANOUT: usize = 1024;

/// `--fanout`: `auto` or a number of peers within bounds.
fn fanout(text: &str) -> Result<Fanout, CliError> {
    if text == "auto" {
        return Ok(Fanout::Auto);
    }
    number("--fanout", text, 1..=MAX_FANOUT)
        .map(Fanout::Fixed)
        .map_err(|_| {
            CliError::Usage(format!(
                "--fanout must be auto or a whole number from 1 to {MAX_FANOUT}, not {text:?}"
            ))
        })
}

/// The shortest and longest push windows `--push-window` takes.
const MIN_PUSH_WINDOW: Duration = Duration::from_micros(100);
const MAX_PUSH_WINDOW: Duration = Duration::from_secs(1);

/// `--push-window`: `auto` or a duration within bounds.
fn push_window(text: &str) -> Result<PushWindow, CliError> {
    if text == "auto" {
        return Ok(PushWindow::Auto);
    }
    let d = duration("--push-window", text, MIN_PUSH_WINDOW)?;
    if d > MAX_PUSH_WINDOW {
        return Err(CliError::Usage(format!(
            "--push-window must be at most {}",
            show_duration(MAX_PUSH_WINDOW)
        )));
    }
    Ok(PushWindow::Fixed(d))
}

/// The engine's settings as `gctr node` and `gctr maelstrom` take them.
#[derive(Debug, Default)]
pub struct GossipFlags {
    config: engine::Config,
}

impl GossipFlags {
    /// Takes `flag` (a long option name) and its value if it is a gossip flag; returns
    /// whether it was.
    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<bool, CliError> {
        let value = |parser: &mut lexopt::Parser| -> Result<String, CliError> {
            Ok(parser.value()?.string()?)
        };
        match flag {
            "gossip-interval" => {
                self.config.gossip_interval = duration(
                    "--gossip-interval",
                    &value(parser)?,
                    engine::MIN_GOSSIP_INTERVAL,
                )?
            }
            "fanout" => self.config.fanout = fanout(&value(parser)?)?,
            "no-eager-push" => self.config.eager_push = false,
            "push-window" => self.config.push_window = push_window(&value(parser)?)?,
            "max-frame" => {
                self.config.max_payload = number(
                    "--max-frame",
                    &value(parser)?,
                    MIN_PAYLOAD..=MAX_PAYLOAD_LIMIT,
                )?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn finish(self) -> engine::Config {
        self.config
    }

    pub fn help() -> Vec<FlagHelp> {
        vec![
            FlagHelp::with_default(
                "--gossip-interval DUR",
                &format!(
                    "time between anti-entropy rounds (at least {}); while push batches \
                     flow, up to {} rounds in a row are skipped",
                    show_duration(engine::MIN_GOSSIP_INTERVAL),
                    engine::MAX_SKIPPED_ROUNDS
                ),
                show_duration(DEFAULT_GOSSIP_INTERVAL),
            ),
            FlagHelp::with_default(
                "--fanout N",
                &format!(
                    "peers per anti-entropy round (1..={MAX_FANOUT}); auto: {} with eager \
                     push, {} without",
                    engine::FANOUT_WITH_PUSH,
                    engine::FANOUT_WITHOUT_PUSH
                ),
                "auto",
            ),
            FlagHelp::new(
                "--no-eager-push",
                "send local changes only by anti-entropy rounds",
            ),
            FlagHelp::with_default(
                "--push-window DUR",
                &format!(
                    "at most one push batch per window, carrying every change since the \
                     last; auto: {} per node in the cluster, {} to a quarter of the gossip \
                     interval (range {}..={})",
                    show_duration(push::WINDOW_PER_NODE),
                    show_duration(push::MIN_WINDOW),
                    show_duration(MIN_PUSH_WINDOW),
                    show_duration(MAX_PUSH_WINDOW)
                ),
                "auto",
            ),
            FlagHelp::with_default(
                "--max-frame BYTES",
                &format!(
                    "largest gossip frame payload sent or accepted; use the same value on \
                     every node (range {MIN_PAYLOAD}..={MAX_PAYLOAD_LIMIT})"
                ),
                DEFAULT_MAX_PAYLOAD,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_parsed_once_with_their_minimum() {
        let min = Duration::from_millis(1);
        assert_eq!(
            duration("--x", "250ms", min).ok(),
            Some(Duration::from_millis(250))
        );
        for bad in ["0s", "500us", "soon", ""] {
            assert!(duration("--x", bad, min).is_err(), "{bad:?} was accepted");
        }
        let e = duration("--x", "0s", Duration::ZERO).unwrap_err();
        assert_eq!(e.to_string(), "--x must be above zero");
        let e = duration("--x", "0s", min).unwrap_err();
        assert_eq!(e.to_string(), "--x must be at least 1ms");
        assert_eq!(duration("--x", "100y", min).ok(), Some(MAX_DURATION));
        let e = duration("--x", "500000000000y", min).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--x must be at most 100years, not \"500000000000y\""
        );
    }

    #[test]
    fn numbers_outside_their_range_are_refused() {
        assert_eq!(number("--n", "3", 1..=5).ok(), Some(3usize));
        for bad in ["0", "6", "-1", "x", ""] {
            assert!(number::<usize>("--n", bad, 1..=5).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn push_windows_are_auto_or_a_duration_within_bounds() {
        assert_eq!(push_window("auto").ok(), Some(PushWindow::Auto));
        assert_eq!(
            push_window("5ms").ok(),
            Some(PushWindow::Fixed(Duration::from_millis(5)))
        );
        for bad in ["0s", "50us", "2s", "soon", ""] {
            assert!(push_window(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn log_formats_are_text_or_json() {
        assert_eq!(log_format("json").ok(), Some(LogFormat::Json));
        assert_eq!(log_format("text").ok(), Some(LogFormat::Text));
        let e = log_format("yaml").unwrap_err();
        assert!(matches!(e, CliError::Usage(_)));
        assert!(e.to_string().starts_with("--log-format: "), "{e}");
    }

    #[test]
    fn help_is_two_aligned_columns_with_the_defaults_in_it() {
        let text = render(&GossipFlags::help());
        assert!(text.contains("[default: 100ms]"), "{text}");
        assert!(text.contains(&format!("[default: {DEFAULT_MAX_PAYLOAD}]")));
        assert!(text.lines().all(|l| l.len() <= WIDTH), "{text}");
        let column = |l: &str| l.len() - l.trim_start().len();
        assert!(text
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .all(|l| column(l) == FLAG_COLUMN + 2));
    }
}

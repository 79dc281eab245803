//! `GCTR_*` environment variables as options: every long option a subcommand's help
//! lists can also be set as `GCTR_` and its name in capitals, dashes made underscores
//! (`--max-frame` is `GCTR_MAX_FRAME`). A container image takes its settings this way.
//!
//! The variables become arguments placed before the command line's, and only for options
//! the command line does not name, so the command line always wins and a repeatable
//! option (`--seeds`) is never taken from both. The help entries are the list of options,
//! so an option cannot be added without its variable.

use super::flags::FlagHelp;
use super::CliError;
use std::ffi::OsString;

/// What subcommand help says about the variables.
pub const HELP: &str = "\
Every option can also be set by an environment variable: GCTR_ and the option's name in
capitals, dashes as underscores (GCTR_ADDR, GCTR_MAX_FRAME); a switch takes 1, true or
yes (0, false or no leave it off). An empty variable counts as unset, and an option on the
command line wins over its variable.
";

/// The environment variable that sets `--flag` (given without its dashes).
pub fn var_name(flag: &str) -> String {
    format!("GCTR_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// The arguments for `flags` (a subcommand's help entries) taken from the environment
/// (`lookup`), followed by `cli`. A variable set to an empty string counts as unset; a
/// switch (an option without a value) is set by `1`, `true` or `yes` and left off by
/// `0`, `false` or `no`.
pub fn with_env(
    flags: &[FlagHelp],
    cli: Vec<OsString>,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<OsString>, CliError> {
    let mut args = Vec::new();
    for entry in flags {
        let Some((name, takes_value)) = long_option(entry.flag) else {
            continue;
        };
        if name == "help" || named_on(&cli, name) {
            continue;
        }
        let var = var_name(name);
        let Some(value) = lookup(&var).filter(|v| !v.is_empty()) else {
            continue;
        };
        if takes_value {
            args.push(OsString::from(format!("--{name}")));
            args.push(value);
        } else if switch_is_on(&var, &value)? {
            args.push(OsString::from(format!("--{name}")));
        }
    }
    args.extend(cli);
    Ok(args)
}

/// [`with_env`] over the process environment.
pub fn with_process_env(flags: &[FlagHelp], cli: Vec<OsString>) -> Result<Vec<OsString>, CliError> {
    with_env(flags, cli, |var| std::env::var_os(var))
}

/// The long option a help entry documents (`--fanout N` → `fanout`, taking a value), if
/// it documents one.
fn long_option(flag: &str) -> Option<(&str, bool)> {
    let long = flag.split(", ").find_map(|f| f.strip_prefix("--"))?;
    match long.split_once(' ') {
        Some((name, _)) => Some((name, true)),
        None => Some((long, false)),
    }
}

/// Whether the command line names `--name` (as `--name VALUE` or `--name=VALUE`).
fn named_on(cli: &[OsString], name: &str) -> bool {
    let plain = format!("--{name}");
    let joined = format!("--{name}=");
    cli.iter()
        .filter_map(|a| a.to_str())
        .any(|a| a == plain || a.starts_with(&joined))
}

fn switch_is_on(var: &str, value: &OsString) -> Result<bool, CliError> {
    match value.to_str().map(str::to_ascii_lowercase).as_deref() {
        Some("1" | "true" | "yes") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        _ => Err(CliError::Usage(format!(
            "{var} must be 1, true, yes, 0, false or no, not {value:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<FlagHelp> {
        vec![
            FlagHelp::new("--addr HOST:PORT", ""),
            FlagHelp::new("--seeds ADDR,...", ""),
            FlagHelp::new("--max-frame BYTES", ""),
            FlagHelp::new("--repair", ""),
            FlagHelp::new("-h, --help", ""),
        ]
    }

    fn run(cli: &[&str], env: &[(&str, &str)]) -> Result<Vec<String>, CliError> {
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let args = with_env(&flags(), cli.iter().map(OsString::from).collect(), |var| {
            env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
        })?;
        Ok(args.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn variables_are_named_after_their_options() {
        assert_eq!(var_name("max-frame"), "GCTR_MAX_FRAME");
        assert_eq!(var_name("addr"), "GCTR_ADDR");
        assert_eq!(long_option("-h, --help"), Some(("help", false)));
        assert_eq!(long_option("--fsync always|never"), Some(("fsync", true)));
        assert_eq!(long_option("-v"), None);
    }

    #[test]
    fn variables_come_first_and_the_command_line_wins() {
        let args = run(
            &["--seeds", "b:1"],
            &[
                ("GCTR_ADDR", "0.0.0.0:9000"),
                ("GCTR_SEEDS", "a:1"),
                ("GCTR_MAX_FRAME", "4096"),
                ("GCTR_BIN", "/elsewhere"),
            ],
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "--addr",
                "0.0.0.0:9000",
                "--max-frame",
                "4096",
                "--seeds",
                "b:1"
            ]
        );
        let args = run(&["--addr=1.2.3.4:1"], &[("GCTR_ADDR", "0.0.0.0:9000")]).unwrap();
        assert_eq!(args, ["--addr=1.2.3.4:1"]);
    }

    #[test]
    fn empty_variables_are_unset_and_switches_take_yes_or_no() {
        assert!(run(&[], &[("GCTR_ADDR", ""), ("GCTR_HELP", "1")])
            .unwrap()
            .is_empty());
        for on in ["1", "true", "YES"] {
            assert_eq!(run(&[], &[("GCTR_REPAIR", on)]).unwrap(), ["--repair"]);
        }
        for off in ["0", "false", "no"] {
            assert!(run(&[], &[("GCTR_REPAIR", off)]).unwrap().is_empty());
        }
        let e = run(&[], &[("GCTR_REPAIR", "maybe")]).unwrap_err();
        assert!(matches!(e, CliError::Usage(_)));
        assert!(e.to_string().starts_with("GCTR_REPAIR must be"), "{e}");
    }
}

//! `gctr health`: asks a node or a discovery server for `GET /health`, so a container
//! health check or probe needs nothing but the binary. Exit 0 when it answers
//! `{"status":"ok"}`, 1 otherwise.

use super::client::DEFAULT_HTTP;
use super::env;
use super::flags::{self, FlagHelp};
use super::CliError;
use crate::http::{Credentials, JsonClient, Timeouts};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How long the check waits for its answer when `--timeout` is not given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

fn options() -> [FlagHelp; 4] {
    [
        FlagHelp::with_default(
            "--http ADDR",
            "the HTTP address of the node or discovery server to ask",
            DEFAULT_HTTP,
        ),
        FlagHelp::with_default(
            "--timeout DUR",
            "fail when no answer came in this long",
            flags::show_duration(DEFAULT_TIMEOUT),
        ),
        FlagHelp::new(
            "--ca FILE",
            "trust the server's HTTPS certificate when this CA (PEM) signed it (for an \
             https:// address)",
        ),
        FlagHelp::new("-h, --help", "show this help"),
    ]
}

fn help() -> String {
    format!(
        "gctr health: check that a node or a discovery server answers

Usage: gctr health [--http ADDR] [--timeout DUR] [--ca FILE]

Asks GET /health; prints `ok` and exits 0 when the answer is {{\"status\":\"ok\"}}, exits 1
otherwise. Made for container health checks (HEALTHCHECK CMD [\"/gctr\", \"health\"]).

Options:
{}
{}",
        flags::render(&options()),
        env::HELP
    )
}

#[derive(Debug, PartialEq)]
struct Options {
    http: String,
    timeout: Duration,
    ca: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Health {
    status: String,
}

pub fn run(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    let args = env::with_process_env(&options(), parser.raw_args()?.collect())?;
    let Some(options) = parse(&mut lexopt::Parser::from_args(args))? else {
        print!("{}", help());
        return Ok(());
    };
    let timeouts = Timeouts {
        connect: options.timeout,
        total: options.timeout,
    };
    // /health needs no token; only the CA, for a server that speaks HTTPS.
    let credentials = Credentials {
        token: None,
        tls: options
            .ca
            .as_deref()
            .map(super::security::trusting)
            .transpose()?,
    };
    let client = JsonClient::new(&options.http, "the server", timeouts, &credentials);
    let health: Health = client.get("/health")?;
    if health.status != "ok" {
        return Err(CliError::Failed(format!(
            "{} reports status {:?}",
            client.base(),
            health.status
        )));
    }
    println!("ok");
    Ok(())
}

/// Parses the options; `None` means `--help` was asked for.
fn parse(parser: &mut lexopt::Parser) -> Result<Option<Options>, CliError> {
    use lexopt::prelude::*;
    let mut options = Options {
        http: DEFAULT_HTTP.to_owned(),
        timeout: DEFAULT_TIMEOUT,
        ca: None,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("http") => options.http = parser.value()?.string()?,
            Long("ca") => options.ca = Some(PathBuf::from(parser.value()?.string()?)),
            Long("timeout") => {
                let v = parser.value()?.string()?;
                options.timeout = flags::duration("--timeout", &v, Duration::ZERO)?;
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Option<Options>, CliError> {
        parse(&mut lexopt::Parser::from_args(args.iter().copied()))
    }

    #[test]
    fn defaults_flags_and_bad_values() {
        let o = parse_args(&[]).unwrap().unwrap();
        assert_eq!(
            (o.http.as_str(), o.timeout),
            (DEFAULT_HTTP, DEFAULT_TIMEOUT)
        );
        let o = parse_args(&["--http", "node1:9010", "--timeout", "500ms"])
            .unwrap()
            .unwrap();
        assert_eq!(o.http, "node1:9010");
        assert_eq!(o.timeout, Duration::from_millis(500));
        assert!(parse_args(&["--help"]).unwrap().is_none());
        for bad in [&["--timeout", "0s"][..], &["--by", "1"], &["extra"]] {
            assert!(
                matches!(parse_args(bad), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}

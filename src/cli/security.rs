//! The security flags, each written once:
//!
//! - [`SecurityFlags`]: what `gctr node` and `gctr discovery` require of their HTTP
//!   clients (`--api-token-file`) and their HTTPS identity (`--tls-cert`, `--tls-key`);
//! - [`DiscoveryCredentialFlags`]: what a node proves to discovery and whom it trusts
//!   there (`--discovery-token-file`, `--discovery-ca`);
//! - [`ClientCredentialFlags`]: what the client commands prove to the node and to
//!   discovery, and whom they trust (`--token`, else `GCTR_TOKEN`; `--ca`).

use super::flags::FlagHelp;
use super::CliError;
use crate::http::tls::client_trusting;
use crate::http::{Access, ApiTokens, Credentials, HttpConfig, ServerTls};
use lexopt::ValueExt;
use std::path::{Path, PathBuf};

/// The environment variable the client commands take their API token from.
pub const TOKEN_ENV: &str = "GCTR_TOKEN";

/// A server's security flags as given.
#[derive(Debug, Default)]
pub struct SecurityFlags {
    token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

impl SecurityFlags {
    pub fn is_flag(flag: &str) -> bool {
        matches!(flag, "api-token-file" | "tls-cert" | "tls-key")
    }

    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        let value = Some(PathBuf::from(parser.value()?.string()?));
        match flag {
            "api-token-file" => self.token_file = value,
            "tls-cert" => self.tls_cert = value,
            _ => self.tls_key = value,
        }
        Ok(())
    }

    /// Loads the files named into `http`; a malformed file fails naming the file (and
    /// the line of a token file).
    pub fn finish(self, http: &mut HttpConfig) -> Result<(), CliError> {
        if let Some(path) = self.token_file {
            let tokens = ApiTokens::load(&path).map_err(CliError::Failed)?;
            http.access = Access::with_tokens(tokens);
        }
        http.tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(ServerTls::load(&cert, &key).map_err(CliError::Failed)?)
            }
            (None, None) => None,
            _ => {
                return Err(CliError::Usage(
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        Ok(())
    }

    /// The flags' help; `serves_redis` for a node, whose `--redis` the tokens guard too.
    pub fn help(serves_redis: bool) -> Vec<FlagHelp> {
        let redis = if serves_redis {
            "; --redis then needs AUTH TOKEN"
        } else {
            ""
        };
        vec![
            FlagHelp::new(
                "--api-token-file FILE",
                format!(
                    "require an API token (`Authorization: Bearer TOKEN`) on every HTTP \
                     request but GET /health: FILE has one token a line, `ro TOKEN` (may \
                     read) or `rw TOKEN` (may also change); 401 without a known token, 403 \
                     for a read-only token on a change{redis}"
                ),
            ),
            FlagHelp::new(
                "--tls-cert FILE",
                "serve HTTPS with this PEM certificate chain (the server's first; with --tls-key)",
            ),
            FlagHelp::new(
                "--tls-key FILE",
                "the PEM private key of --tls-cert (unencrypted PKCS#8, PKCS#1 or SEC1)",
            ),
        ]
    }
}

/// What a node proves to discovery, as given.
#[derive(Debug, Default)]
pub struct DiscoveryCredentialFlags {
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
}

impl DiscoveryCredentialFlags {
    pub fn is_flag(flag: &str) -> bool {
        matches!(flag, "discovery-token-file" | "discovery-ca")
    }

    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        let value = Some(PathBuf::from(parser.value()?.string()?));
        match flag {
            "discovery-token-file" => self.token_file = value,
            _ => self.ca = value,
        }
        Ok(())
    }

    /// The first flag given, if any (they need `--discovery`).
    pub fn given(&self) -> Option<&'static str> {
        match (&self.token_file, &self.ca) {
            (Some(_), _) => Some("--discovery-token-file"),
            (None, Some(_)) => Some("--discovery-ca"),
            (None, None) => None,
        }
    }

    pub fn finish(self) -> Result<Credentials, CliError> {
        Ok(Credentials {
            token: self.token_file.map(|p| read_token_file(&p)).transpose()?,
            tls: self.ca.map(|ca| trusting(&ca)).transpose()?,
        })
    }

    pub fn help() -> Vec<FlagHelp> {
        vec![
            FlagHelp::new(
                "--discovery-token-file FILE",
                "send the token in FILE (its one line) to a discovery server started with \
             --api-token-file; registering needs a read-write (rw) token",
            ),
            FlagHelp::new(
                "--discovery-ca FILE",
                "trust only the PEM CA certificate(s) in FILE for an https:// --discovery \
             [default: the public web's roots]",
            ),
        ]
    }
}

/// What a client command proves, as given.
#[derive(Debug, Default)]
pub struct ClientCredentialFlags {
    token: Option<String>,
    ca: Option<PathBuf>,
}

impl ClientCredentialFlags {
    pub fn is_flag(flag: &str) -> bool {
        matches!(flag, "token" | "ca")
    }

    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        let value = parser.value()?.string()?;
        match flag {
            "token" => self.token = Some(value),
            _ => self.ca = Some(PathBuf::from(value)),
        }
        Ok(())
    }

    /// The credentials: `--token`, else `env_token` (`GCTR_TOKEN`) when not blank.
    pub fn finish(self, env_token: Option<String>) -> Result<Credentials, CliError> {
        let token = self
            .token
            .or(env_token.filter(|t| !t.trim().is_empty()))
            .map(|t| check_token(t.trim(), "--token"))
            .transpose()?;
        let tls = self.ca.map(|ca| trusting(&ca)).transpose()?;
        Ok(Credentials { token, tls })
    }
}

/// The one token in the file at `path` (blank lines and `#` comments skipped).
fn read_token_file(path: &Path) -> Result<String, CliError> {
    let failed = |e: String| CliError::Failed(format!("token file {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match (lines.next(), lines.next()) {
        (Some(token), None) => check_token(token, "the token").map_err(|e| failed(e.to_string())),
        (None, _) => Err(failed("no token in it".into())),
        (Some(_), Some(_)) => Err(failed("more than one line; give one token".into())),
    }
}

/// A TLS client configuration trusting the CA certificates in `ca`.
pub fn trusting(ca: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>, CliError> {
    client_trusting(ca).map_err(CliError::Failed)
}

/// A token that can go in an HTTP header.
fn check_token(token: &str, what: &str) -> Result<String, CliError> {
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(CliError::Usage(format!(
            "{what} must be one word of visible ASCII characters"
        )));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_token_comes_from_the_flag_else_the_environment() {
        let flag = ClientCredentialFlags {
            token: Some("from-flag".into()),
            ca: None,
        };
        let token = |f: ClientCredentialFlags, env: Option<&str>| {
            f.finish(env.map(String::from)).unwrap().token
        };
        assert_eq!(token(flag, Some("from-env")).as_deref(), Some("from-flag"));
        let none = ClientCredentialFlags::default;
        assert_eq!(
            token(none(), Some(" from-env ")).as_deref(),
            Some("from-env")
        );
        assert_eq!(token(none(), Some("  ")), None);
        assert_eq!(token(none(), None), None);
        let bad = ClientCredentialFlags {
            token: Some("two words".into()),
            ca: None,
        };
        assert!(matches!(bad.finish(None), Err(CliError::Usage(_))));
    }

    #[test]
    fn a_token_file_holds_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let path = dir.path().join("token");
            std::fs::write(&path, text).unwrap();
            read_token_file(&path).map_err(|e| e.to_string())
        };
        assert_eq!(write("# discovery\n abc-def \n").as_deref(), Ok("abc-def"));
        assert!(write("").unwrap_err().contains("no token"));
        assert!(write("a\nb\n").unwrap_err().contains("more than one line"));
        assert!(write("a b\n").unwrap_err().contains("one word"));
    }
}

//! The security flags, each written once:
//!
//! - [`SecurityFlags`]: what `gctr node` and `gctr discovery` require of their HTTP
//!   clients (`--api-token-file`);
//! - [`DiscoveryCredentialFlags`]: what a node proves to discovery
//!   (`--discovery-token-file`);
//! - [`ClientCredentialFlags`]: what the client commands prove to the node and to
//!   discovery (`--token`, else `GCTR_TOKEN`).

use super::flags::FlagHelp;
use super::CliError;
use crate::http::{Access, ApiTokens, Credentials, HttpConfig};
use lexopt::ValueExt;
use std::path::{Path, PathBuf};

/// The environment variable the client commands take their API token from.
pub const TOKEN_ENV: &str = "GCTR_TOKEN";

/// A server's security flags as given.
#[derive(Debug, Default)]
pub struct SecurityFlags {
    token_file: Option<PathBuf>,
}

impl SecurityFlags {
    pub fn is_flag(flag: &str) -> bool {
        matches!(flag, "api-token-file")
    }

    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        let value = PathBuf::from(parser.value()?.string()?);
        if flag == "api-token-file" {
            self.token_file = Some(value);
        }
        Ok(())
    }

    /// Loads the files named into `http`; a malformed file fails naming its line.
    pub fn finish(self, http: &mut HttpConfig) -> Result<(), CliError> {
        if let Some(path) = self.token_file {
            let tokens = ApiTokens::load(&path).map_err(CliError::Failed)?;
            http.access = Access::with_tokens(tokens);
        }
        Ok(())
    }

    pub fn help() -> Vec<FlagHelp> {
        vec![FlagHelp::new(
            "--api-token-file FILE",
            "require an API token (`Authorization: Bearer TOKEN`) on every HTTP request but \
             GET /health: FILE has one token a line, `ro TOKEN` (may read) or `rw TOKEN` \
             (may also change); 401 without a known token, 403 for a read-only token on a \
             change",
        )]
    }
}

/// What a node proves to discovery, as given.
#[derive(Debug, Default)]
pub struct DiscoveryCredentialFlags {
    token_file: Option<PathBuf>,
}

impl DiscoveryCredentialFlags {
    pub fn is_flag(flag: &str) -> bool {
        matches!(flag, "discovery-token-file")
    }

    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        let value = PathBuf::from(parser.value()?.string()?);
        if flag == "discovery-token-file" {
            self.token_file = Some(value);
        }
        Ok(())
    }

    /// Whether any was given (they need `--discovery`).
    pub fn given(&self) -> bool {
        self.token_file.is_some()
    }

    pub fn finish(self) -> Result<Credentials, CliError> {
        let token = self.token_file.map(|p| read_token_file(&p)).transpose()?;
        Ok(Credentials { token })
    }

    pub fn help() -> Vec<FlagHelp> {
        vec![FlagHelp::new(
            "--discovery-token-file FILE",
            "send the token in FILE (its one line) to a discovery server started with \
             --api-token-file; registering needs a read-write (rw) token",
        )]
    }
}

/// What a client command proves, as given.
#[derive(Debug, Default)]
pub struct ClientCredentialFlags {
    token: Option<String>,
}

impl ClientCredentialFlags {
    pub fn is_flag(flag: &str) -> bool {
        matches!(flag, "token")
    }

    pub fn take(&mut self, flag: &str, parser: &mut lexopt::Parser) -> Result<(), CliError> {
        let value = parser.value()?.string()?;
        if flag == "token" {
            self.token = Some(value);
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
        Ok(Credentials { token })
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

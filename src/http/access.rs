//! Who may use an HTTP server (the node API or discovery) and what for: the API tokens of
//! `--api-token-file`, checked once for every request before any route sees it.
//!
//! A token file has one token a line, each prefixed with its role: `ro TOKEN` may read
//! (GET and HEAD), `rw TOKEN` may also change things (every other method: writes, member
//! admin, discovery registrations, key changes). Blank lines and lines starting with `#`
//! are skipped. A client sends `Authorization: Bearer TOKEN`. Without tokens every request
//! passes (the behaviour before tokens existed). With them: no or an unknown token is
//! 401, a read-only token on a change is 403, and `GET /health` is always open so load
//! balancers and orchestrators can probe without a secret.
//!
//! Tokens are kept only as SHA-256 digests, and a presented token is compared with every
//! one of them in constant time (`subtle`), so neither the answer's timing nor a memory
//! dump gives a token away. Every refusal is counted ([`Refusals`]) for `/status` and
//! `/metrics`.

use crate::status::AccessStatus;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The shortest token accepted: shorter ones can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;
/// The longest token accepted, so a request header carrying one stays small.
pub const MAX_TOKEN_CHARS: usize = 1024;
/// The path no token is needed for.
pub const OPEN_PATH: &str = "/health";

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// GET and HEAD.
    ReadOnly,
    /// Every method.
    ReadWrite,
}

/// The tokens of a token file, as digests with their roles.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiTokens {
    tokens: Vec<([u8; 32], Role)>,
}

impl fmt::Debug for ApiTokens {
    /// Never the tokens, only how many there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokens({} tokens)", self.tokens.len())
    }
}

impl ApiTokens {
    /// Reads and checks the token file at `path`; the error names the file and the line.
    pub fn load(path: &Path) -> Result<ApiTokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        ApiTokens::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// The tokens in `text`, in the token file's format.
    pub fn parse(text: &str) -> Result<ApiTokens, String> {
        let mut tokens: Vec<([u8; 32], Role)> = Vec::new();
        let mut first_line: Vec<usize> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (role, token) = parse_line(line).map_err(|e| format!("line {number}: {e}"))?;
            let digest = digest(token);
            if let Some(at) = tokens.iter().position(|(d, _)| *d == digest) {
                return Err(format!(
                    "line {number}: the same token is already on line {}",
                    first_line[at]
                ));
            }
            tokens.push((digest, role));
            first_line.push(number);
        }
        if tokens.is_empty() {
            return Err("no tokens (expected lines `ro TOKEN` or `rw TOKEN`)".into());
        }
        Ok(ApiTokens { tokens })
    }

    /// The role of `presented`, if it is one of the tokens. Compares with every token,
    /// each in constant time, whatever matches.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let digest = digest(presented);
        let mut found = None;
        for (known, role) in &self.tokens {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(*role);
            }
        }
        found
    }
}

fn parse_line(line: &str) -> Result<(Role, &str), String> {
    let expected = "expected `ro TOKEN` or `rw TOKEN`";
    let (prefix, token) = line
        .split_once([' ', '\t'])
        .ok_or_else(|| format!("{expected}, got one word"))?;
    let role = match prefix {
        "ro" => Role::ReadOnly,
        "rw" => Role::ReadWrite,
        other => return Err(format!("{expected}, not a line starting {other:?}")),
    };
    let token = token.trim();
    if token.chars().any(|c| !c.is_ascii_graphic()) {
        return Err("a token is one word of visible ASCII characters".into());
    }
    if !(MIN_TOKEN_CHARS..=MAX_TOKEN_CHARS).contains(&token.len()) {
        return Err(format!(
            "a token has {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} characters, this one {}",
            token.len()
        ));
    }
    Ok((role, token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no token, a malformed `Authorization` header, or an unknown token.
    Unauthenticated(String),
    /// 403: a read-only token on a change.
    Forbidden(String),
}

/// Requests refused since the server started.
#[derive(Debug, Default)]
pub struct Refusals {
    unauthenticated: AtomicU64,
    forbidden: AtomicU64,
}

impl Refusals {
    pub fn count(&self, refusal: &Refusal) {
        let counter = match refusal {
            Refusal::Unauthenticated(_) => &self.unauthenticated,
            Refusal::Forbidden(_) => &self.forbidden,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A server's gate: its tokens (none: open to all) and the count of what it refused.
/// Clones share the counts, so the RESP server and the HTTP API of one node add up.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub tokens: Option<Arc<ApiTokens>>,
    pub refusals: Arc<Refusals>,
}

impl PartialEq for Access {
    fn eq(&self, other: &Access) -> bool {
        self.tokens == other.tokens
    }
}

impl Eq for Access {}

impl Access {
    /// A gate checking `tokens`.
    pub fn with_tokens(tokens: ApiTokens) -> Access {
        Access {
            tokens: Some(Arc::new(tokens)),
            refusals: Arc::default(),
        }
    }

    /// Whether a request may go on: `reads` says whether it only reads (GET or HEAD),
    /// `authorization` is its `Authorization` header. Refusals are counted.
    pub fn check_http(
        &self,
        path: &str,
        reads: bool,
        authorization: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.tokens.is_none() || path == OPEN_PATH {
            return Ok(());
        }
        let token = authorization.and_then(bearer).ok_or_else(|| {
            Refusal::Unauthenticated(
                "this server needs an API token: send `Authorization: Bearer TOKEN`".into(),
            )
        });
        let outcome = token.and_then(|t| self.check_token(t, reads));
        if let Err(refusal) = &outcome {
            self.refusals.count(refusal);
        }
        outcome
    }

    /// Whether `token` may read (`reads`) or change; not counted.
    pub fn check_token(&self, token: &str, reads: bool) -> Result<(), Refusal> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        match tokens.role_of(token) {
            None => Err(Refusal::Unauthenticated("unknown API token".into())),
            Some(Role::ReadOnly) if !reads => Err(Refusal::Forbidden(
                "this API token is read-only; changes need a read-write (rw) token".into(),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Whether tokens are required at all.
    pub fn required(&self) -> bool {
        self.tokens.is_some()
    }

    pub fn status(&self) -> AccessStatus {
        AccessStatus {
            tokens_required: self.required(),
            unauthenticated: self.refusals.unauthenticated.load(Ordering::Relaxed),
            forbidden: self.refusals.forbidden.load(Ordering::Relaxed),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: &str = "rw-0123456789abcdef";
    const RO: &str = "ro-0123456789abcdef";

    fn access() -> Access {
        let file = format!("# tokens\n\nrw {RW}\n  ro {RO}  \n");
        Access::with_tokens(ApiTokens::parse(&file).unwrap())
    }

    #[test]
    fn tokens_have_roles_and_unknown_ones_none() {
        let tokens = ApiTokens::parse(&format!("rw {RW}\nro {RO}\n")).unwrap();
        assert_eq!(tokens.role_of(RW), Some(Role::ReadWrite));
        assert_eq!(tokens.role_of(RO), Some(Role::ReadOnly));
        assert_eq!(tokens.role_of("rw-0123456789abcdeX"), None);
        assert_eq!(tokens.role_of(""), None);
        assert!(!format!("{tokens:?}").contains(RW));
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_line() {
        for (text, expected) in [
            ("", "no tokens"),
            ("# only a comment\n", "no tokens"),
            (&format!("rw {RW}\nadmin {RO}\n"), "line 2: expected"),
            (
                &format!("\n{RW}\n"),
                "line 2: expected `ro TOKEN` or `rw TOKEN`",
            ),
            (
                "ro short\n",
                "line 1: a token has 16 to 1024 characters, this one 5",
            ),
            (&format!("ro {RO} extra\n"), "line 1: a token is one word"),
            (
                &format!("rw {RW}\nro {RW}\n"),
                "line 2: the same token is already on line 1",
            ),
            (&format!("RW {RW}\n"), "line 1: expected"),
        ] {
            let e = ApiTokens::parse(text).unwrap_err();
            assert!(e.starts_with(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn reads_need_any_token_changes_a_read_write_one() {
        let a = access();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(a.check_http("/counters", true, Some(&bearer(RO))), Ok(()));
        assert_eq!(a.check_http("/increment", false, Some(&bearer(RW))), Ok(()));
        assert_eq!(
            a.check_http("/x", true, Some(&format!("bearer  {RW} "))),
            Ok(())
        );
        let unauthenticated = [
            a.check_http("/counters", true, None),
            a.check_http("/counters", true, Some(RW)),
            a.check_http("/counters", true, Some(&format!("Basic {RW}"))),
            a.check_http("/counters", true, Some("Bearer nope-nope-nope-nope")),
            a.check_http("/counters", true, Some("Bearer ")),
        ];
        assert!(unauthenticated
            .iter()
            .all(|r| matches!(r, Err(Refusal::Unauthenticated(_)))));
        let forbidden = a.check_http("/increment", false, Some(&bearer(RO)));
        assert!(matches!(forbidden, Err(Refusal::Forbidden(_))));
        assert_eq!(a.check_http(OPEN_PATH, true, None), Ok(()));
        let status = a.status();
        assert_eq!(
            (
                status.tokens_required,
                status.unauthenticated,
                status.forbidden
            ),
            (true, 5, 1)
        );
    }

    #[test]
    fn without_tokens_everything_passes() {
        let open = Access::default();
        assert_eq!(open.check_http("/increment", false, None), Ok(()));
        assert!(!open.status().tokens_required);
    }
}

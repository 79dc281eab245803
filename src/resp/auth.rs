//! API tokens on the Redis protocol: a connection to a node started with
//! `--api-token-file` must `AUTH TOKEN` (or `HELLO 2 AUTH user TOKEN`; the username is
//! ignored) before anything but `AUTH`, `HELLO`, `QUIT` and `RESET`; a read-only token
//! may read (`GET`, `MGET`, `EXISTS`, `INFO`, ...) but not `INCR`/`DECR`. Refusals use
//! Redis' own error codes (`NOAUTH`, `WRONGPASS`, `NOPERM`) and are counted with the
//! HTTP API's ([`Access`]). Without tokens every connection may do everything, and
//! `AUTH` is an error, as in a Redis without a password.

use super::command::{Command, NO_AUTH};
use crate::http::access::{Access, Refusal, Role};

/// One connection's standing.
pub struct Gate {
    access: Access,
    /// The role of the last token accepted; `None` before one.
    role: Option<Role>,
}

impl Gate {
    pub fn new(access: Access) -> Gate {
        Gate { access, role: None }
    }

    /// `AUTH token`: takes the token's role, or refuses it (the standing is unchanged).
    pub fn authenticate(&mut self, token: &[u8]) -> Result<(), String> {
        let Some(tokens) = &self.access.tokens else {
            return Err(NO_AUTH.into());
        };
        match std::str::from_utf8(token)
            .ok()
            .and_then(|t| tokens.role_of(t))
        {
            Some(role) => {
                self.role = Some(role);
                Ok(())
            }
            None => Err(self.refuse(Refusal::Unauthenticated(
                "WRONGPASS unknown API token".into(),
            ))),
        }
    }

    /// Whether `command` may run now; a refusal is counted and is its error line.
    pub fn admit(&self, command: &Command) -> Result<(), String> {
        if !self.access.required() {
            return Ok(());
        }
        let handles_itself = matches!(
            command,
            Command::Auth(_) | Command::Hello { .. } | Command::Quit | Command::Reset
        );
        match self.role {
            _ if handles_itself => Ok(()),
            None => Err(self.refuse(Refusal::Unauthenticated(
                "NOAUTH Authentication required: this node needs an API token (AUTH TOKEN)".into(),
            ))),
            Some(Role::ReadOnly) if matches!(command, Command::Op(_)) => {
                Err(self.refuse(Refusal::Forbidden(
                    "NOPERM this API token is read-only; INCR, INCRBY, DECR and DECRBY need a \
                     read-write (rw) token"
                        .into(),
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// `RESET`: back to unauthenticated, as in Redis.
    pub fn reset(&mut self) {
        self.role = None;
    }

    fn refuse(&self, refusal: Refusal) -> String {
        self.access.refusals.count(&refusal);
        match refusal {
            Refusal::Unauthenticated(m) | Refusal::Forbidden(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::{LocalOp, OpKind};
    use crate::http::ApiTokens;

    const RW: &str = "rw-0123456789abcdef";
    const RO: &str = "ro-0123456789abcdef";

    fn gate() -> Gate {
        let tokens = ApiTokens::parse(&format!("rw {RW}\nro {RO}\n")).unwrap();
        Gate::new(Access::with_tokens(tokens))
    }

    fn incr() -> Command<'static> {
        Command::Op(LocalOp {
            counter: "c".into(),
            kind: OpKind::Increment,
            amount: 1,
            key: None,
        })
    }

    #[test]
    fn nothing_but_auth_before_a_token_and_no_writes_with_a_read_only_one() {
        let mut g = gate();
        assert!(g
            .admit(&Command::Get("c".into()))
            .unwrap_err()
            .starts_with("NOAUTH"));
        assert_eq!(g.admit(&Command::Auth(b"x")), Ok(()));
        assert!(g
            .authenticate(b"wrong")
            .unwrap_err()
            .starts_with("WRONGPASS"));
        assert_eq!(g.authenticate(RO.as_bytes()), Ok(()));
        assert_eq!(g.admit(&Command::Get("c".into())), Ok(()));
        assert!(g.admit(&incr()).unwrap_err().starts_with("NOPERM"));
        assert!(g.authenticate(b"wrong").is_err());
        assert!(
            g.admit(&incr()).is_err(),
            "a failed AUTH changed the standing"
        );
        assert_eq!(g.authenticate(RW.as_bytes()), Ok(()));
        assert_eq!(g.admit(&incr()), Ok(()));
        g.reset();
        assert!(g.admit(&incr()).unwrap_err().starts_with("NOAUTH"));
        let status = g.access.status();
        assert_eq!((status.unauthenticated, status.forbidden), (4, 2));
    }

    #[test]
    fn without_tokens_everything_runs_and_auth_is_an_error() {
        let mut open = Gate::new(Access::default());
        assert_eq!(open.admit(&incr()), Ok(()));
        assert_eq!(open.authenticate(b"x").unwrap_err(), NO_AUTH);
    }
}

//! The command table and the checks that turn a request's arguments into a [`Command`]:
//! name lookup (case-insensitive), arity, integers, counter names.
//!
//! Everything a request can get wrong is found here, before anything reaches the node,
//! so a refused command applies nothing. The table also feeds `COMMAND`, `COMMAND INFO`
//! and `COMMAND DOCS`, so what the server claims to support is what it dispatches.

use super::parser::parse_i64;
use super::reply::{self, quoted};
use crate::crdt::{validate_counter_name, LocalOp, OpKind};
use std::ops::Range;

/// One request's arguments: ranges into the bytes they were parsed from.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    bytes: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    pub fn new(bytes: &'a [u8], ranges: &'a [Range<usize>]) -> Args<'a> {
        Args { bytes, ranges }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i`; callers check [`Args::len`] first (arity is checked at dispatch).
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.bytes[self.ranges[i].clone()]
    }

    /// The arguments from `i` on.
    pub fn skip(&self, i: usize) -> Args<'a> {
        Args {
            bytes: self.bytes,
            ranges: &self.ranges[i.min(self.ranges.len())..],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.ranges.iter().map(|r| &self.bytes[r.clone()])
    }
}

/// Which command a table entry is, for dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Id {
    Incr,
    IncrBy,
    Decr,
    DecrBy,
    Get,
    MGet,
    Exists,
    Ping,
    Echo,
    Select,
    Quit,
    Reset,
    Hello,
    Auth,
    Client,
    Command,
    Info,
    Config,
    Multi,
    Exec,
    Discard,
}

/// What a command is, for `COMMAND` and for dispatch.
#[derive(Debug)]
pub struct Spec {
    id: Id,
    /// Lower case, as Redis reports it.
    pub name: &'static str,
    /// Redis's convention: N exactly N arguments (name included), -N at least N.
    pub arity: i64,
    pub flags: &'static [&'static str],
    /// Positions of the first and last key and the step between keys; 0 when none.
    pub keys: (i64, i64, i64),
    pub group: &'static str,
    pub summary: &'static str,
}

const fn spec(
    id: Id,
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        id,
        name,
        arity,
        flags,
        keys,
        group,
        summary,
    }
}

const WRITE: &[&str] = &["write", "denyoom", "fast"];
const READ: &[&str] = &["readonly", "fast"];
const CONN: &[&str] = &["noscript", "loading", "stale", "fast"];
const SLOW: &[&str] = &["noscript", "loading", "stale"];
const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command gctr answers.
#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    spec(Id::Incr, "incr", 2, WRITE, ONE_KEY, "string", "Adds 1 to a counter and returns its new value."),
    spec(Id::IncrBy, "incrby", 3, WRITE, ONE_KEY, "string", "Adds an integer (negative: subtracts) to a counter and returns its new value."),
    spec(Id::Decr, "decr", 2, WRITE, ONE_KEY, "string", "Subtracts 1 from a counter and returns its new value."),
    spec(Id::DecrBy, "decrby", 3, WRITE, ONE_KEY, "string", "Subtracts an integer (negative: adds) from a counter and returns its new value."),
    spec(Id::Get, "get", 2, READ, ONE_KEY, "string", "Returns a counter's value as a string; \"0\" for a counter never written."),
    spec(Id::MGet, "mget", -2, READ, ALL_KEYS, "string", "Returns the values of several counters."),
    spec(Id::Exists, "exists", -2, READ, ALL_KEYS, "generic", "Counts the given counters that have ever been written."),
    spec(Id::Ping, "ping", -1, CONN, NO_KEYS, "connection", "Returns PONG, or the argument given."),
    spec(Id::Echo, "echo", 2, CONN, NO_KEYS, "connection", "Returns the argument given."),
    spec(Id::Select, "select", 2, CONN, NO_KEYS, "connection", "Accepts database 0, the only one."),
    spec(Id::Quit, "quit", -1, CONN, NO_KEYS, "connection", "Closes the connection."),
    spec(Id::Reset, "reset", 1, CONN, NO_KEYS, "connection", "Resets the connection's state (its name)."),
    spec(Id::Hello, "hello", -1, CONN, NO_KEYS, "connection", "Handshakes in protocol 2 (RESP2) only."),
    spec(Id::Auth, "auth", -2, CONN, NO_KEYS, "connection", "Authenticates with an API token of --api-token-file."),
    spec(Id::Client, "client", -2, SLOW, NO_KEYS, "connection", "CLIENT SETNAME, GETNAME, ID and SETINFO."),
    spec(Id::Command, "command", -1, SLOW, NO_KEYS, "server", "Describes the commands gctr answers (COMMAND, COUNT, INFO, DOCS)."),
    spec(Id::Info, "info", -1, SLOW, NO_KEYS, "server", "The server, clients, persistence and replication sections."),
    spec(Id::Config, "config", -2, SLOW, NO_KEYS, "server", "CONFIG GET of the settings clients ask about."),
    spec(Id::Multi, "multi", 1, CONN, NO_KEYS, "transactions", "Starts queueing commands for EXEC."),
    spec(Id::Exec, "exec", 1, SLOW, NO_KEYS, "transactions", "Runs the queued commands; their increments share one batch."),
    spec(Id::Discard, "discard", 1, CONN, NO_KEYS, "transactions", "Drops the queued commands."),
];

/// The commands that change or read counters, named in the error for any other command.
const COUNTER_COMMANDS: &str = "INCR, INCRBY, DECR, DECRBY, GET, MGET, EXISTS";

/// The answer to `AUTH` on a node without API tokens.
pub const NO_AUTH: &str =
    "ERR AUTH is not supported: this node has no API tokens (--api-token-file); connect without one";

/// A request that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Ping(Option<&'a [u8]>),
    Echo(&'a [u8]),
    /// An increment or decrement by at least 1.
    Op(LocalOp),
    /// `GET`: the value as a bulk string.
    Get(String),
    /// `INCRBY`/`DECRBY` by 0: the value as an integer, nothing applied.
    Value(String),
    MGet(Vec<String>),
    Exists(Vec<String>),
    Select,
    Quit,
    Reset,
    /// `HELLO` or `HELLO 2`, with the name to set if `SETNAME` was given and the token
    /// if `AUTH` was.
    Hello {
        name: Option<&'a [u8]>,
        token: Option<&'a [u8]>,
    },
    /// `AUTH [username] token`: the username is ignored (a token carries its role).
    Auth(&'a [u8]),
    /// `CLIENT SETNAME`; an empty name clears it.
    ClientSetName(&'a [u8]),
    ClientGetName,
    ClientId,
    ClientSetInfo,
    /// `COMMAND` or `COMMAND INFO [name ...]`: all when no name is given.
    CommandInfo(Args<'a>),
    CommandCount,
    /// `COMMAND DOCS [name ...]`: all when no name is given.
    CommandDocs(Args<'a>),
    /// `INFO [section ...]`.
    Info(Args<'a>),
    /// `CONFIG GET pattern [pattern ...]`.
    ConfigGet(Args<'a>),
    Multi,
    Exec,
    Discard,
}

impl PartialEq for Args<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Args<'_> {}

/// A refused request: the whole error line, code first (`ERR ...`, `NOPROTO ...`).
pub type Refusal = String;

impl Command<'_> {
    /// The most bytes this command's reply can take: what a transaction queueing it must
    /// count on, since `EXEC` answers every queued command in one reply. An error reply
    /// is at most [`reply::MAX_ERROR_REPLY`]; informational commands count their whole
    /// table, `CLIENT GETNAME` the longest name (a test checks each bound against the
    /// reply).
    pub fn reply_bound(&self) -> usize {
        /// `:n` for any i64.
        const INTEGER: usize = 1 + 20 + 2;
        /// `$n` then an i64 as text.
        const BULK_INTEGER: usize = 1 + 2 + 2 + 20 + 2;
        /// A bulk string's head and tail, around its bytes.
        const BULK: usize = 1 + 20 + 2 + 2;
        let success = match self {
            Command::Ping(None) => 7,
            Command::Ping(Some(msg)) | Command::Echo(msg) => BULK + msg.len(),
            Command::Op(_) | Command::Value(_) | Command::Exists(_) | Command::CommandCount => {
                INTEGER
            }
            Command::ClientId => INTEGER,
            Command::Get(_) => BULK_INTEGER,
            Command::MGet(keys) => INTEGER + BULK_INTEGER * keys.len(),
            Command::ClientGetName => BULK + MAX_CLIENT_NAME,
            Command::Hello { .. } => 1024,
            Command::CommandInfo(args) | Command::CommandDocs(args) => 16 * 1024 + 256 * args.len(),
            Command::Info(_) => 8 * 1024,
            Command::ConfigGet(args) => 2 * 1024 + 256 * args.len(),
            _ => 16,
        };
        success.max(reply::MAX_ERROR_REPLY)
    }
}

/// Checks a non-empty request and says what to do with it.
pub fn parse<'a>(args: Args<'a>) -> Result<Command<'a>, Refusal> {
    let name = args.get(0);
    let Some(spec) = lookup(name) else {
        return Err(format!(
            "ERR unknown command '{}': gctr holds PN-counters only ({COUNTER_COMMANDS}); nothing was applied",
            quoted(name)
        ));
    };
    let n = args.len() as i64;
    if (spec.arity >= 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return Err(wrong_arity(spec.name));
    }
    Ok(match spec.id {
        Id::Incr => Command::Op(op(args.get(1), OpKind::Increment, 1)?),
        Id::Decr => Command::Op(op(args.get(1), OpKind::Decrement, 1)?),
        Id::IncrBy => by(args.get(1), args.get(2), OpKind::Increment)?,
        Id::DecrBy => by(args.get(1), args.get(2), OpKind::Decrement)?,
        Id::Get => Command::Get(counter(args.get(1))?),
        Id::MGet => Command::MGet(counters(args.skip(1))?),
        Id::Exists => Command::Exists(counters(args.skip(1))?),
        Id::Ping if n > 2 => return Err(wrong_arity("ping")),
        Id::Ping => Command::Ping((n == 2).then(|| args.get(1))),
        Id::Echo => Command::Echo(args.get(1)),
        Id::Select => select(args.get(1))?,
        Id::Quit => Command::Quit,
        Id::Reset => Command::Reset,
        Id::Hello => hello(args)?,
        Id::Auth if n > 3 => return Err(wrong_arity("auth")),
        Id::Auth => Command::Auth(args.get(args.len() - 1)),
        Id::Client => client(args)?,
        Id::Command => command(args)?,
        Id::Info => Command::Info(args.skip(1)),
        Id::Config => config(args)?,
        Id::Multi => Command::Multi,
        Id::Exec => Command::Exec,
        Id::Discard => Command::Discard,
    })
}

/// Whether a command runs at once even between `MULTI` and `EXEC`, as in Redis.
pub fn runs_inside_multi(name: &[u8]) -> bool {
    ["exec", "discard", "multi", "quit", "reset"]
        .iter()
        .any(|c| c.as_bytes().eq_ignore_ascii_case(name))
}

/// The table entry for a command name, whatever its case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

fn wrong_arity(name: &str) -> Refusal {
    format!("ERR wrong number of arguments for '{name}' command")
}

fn not_an_integer() -> Refusal {
    "ERR value is not an integer or out of range".into()
}

/// A counter name: UTF-8, 1 to 128 bytes, no control characters (as over HTTP).
fn counter(key: &[u8]) -> Result<String, Refusal> {
    let name = std::str::from_utf8(key)
        .map_err(|_| format!("ERR invalid counter name '{}': not UTF-8", quoted(key)))?;
    validate_counter_name(name)
        .map_err(|e| format!("ERR invalid counter name '{}': {e}", quoted(key)))?;
    Ok(name.to_owned())
}

fn counters(keys: Args<'_>) -> Result<Vec<String>, Refusal> {
    keys.iter().map(counter).collect()
}

fn op(key: &[u8], kind: OpKind, amount: u64) -> Result<LocalOp, Refusal> {
    Ok(LocalOp {
        counter: counter(key)?,
        kind,
        amount,
        key: None,
    })
}

/// `INCRBY`/`DECRBY key n`: a negative `n` goes the other way; 0 reads the value.
fn by<'a>(key: &[u8], amount: &[u8], kind: OpKind) -> Result<Command<'a>, Refusal> {
    let n = parse_i64(amount).ok_or_else(not_an_integer)?;
    let (kind, magnitude) = match (kind, n) {
        (_, 0) => return Ok(Command::Value(counter(key)?)),
        (kind, n) if n > 0 => (kind, n.unsigned_abs()),
        (OpKind::Increment, n) => (OpKind::Decrement, n.unsigned_abs()),
        (OpKind::Decrement, n) => (OpKind::Increment, n.unsigned_abs()),
    };
    if magnitude > i64::MAX as u64 {
        return Err("ERR increment or decrement would overflow".into());
    }
    Ok(Command::Op(op(key, kind, magnitude)?))
}

fn select<'a>(index: &[u8]) -> Result<Command<'a>, Refusal> {
    match parse_i64(index) {
        Some(0) => Ok(Command::Select),
        Some(_) => Err("ERR DB index is out of range: gctr has one keyspace, database 0".into()),
        None => Err(not_an_integer()),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
fn hello(args: Args<'_>) -> Result<Command<'_>, Refusal> {
    if args.len() == 1 {
        return Ok(Command::Hello {
            name: None,
            token: None,
        });
    }
    match parse_i64(args.get(1)) {
        Some(2) => {}
        Some(3) => {
            return Err(
                "NOPROTO sorry, gctr speaks RESP2 only: HELLO 3 is not supported; use HELLO 2 or no HELLO"
                    .into(),
            )
        }
        Some(_) => return Err("NOPROTO sorry, this protocol version is not supported".into()),
        None => return Err("ERR Protocol version is not an integer or out of range".into()),
    }
    let (mut name, mut token) = (None, None);
    let mut i = 2;
    while i < args.len() {
        let option = args.get(i);
        let remaining = args.len() - i - 1;
        if option.eq_ignore_ascii_case(b"AUTH") && remaining >= 2 {
            token = Some(args.get(i + 2));
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && remaining >= 1 {
            let candidate = args.get(i + 1);
            check_client_name(candidate)?;
            name = Some(candidate);
            i += 2;
        } else {
            return Err(format!(
                "ERR Syntax error in HELLO option '{}'",
                quoted(option)
            ));
        }
    }
    Ok(Command::Hello { name, token })
}

/// The longest client name `CLIENT SETNAME` and `HELLO ... SETNAME` take.
pub const MAX_CLIENT_NAME: usize = 1024;

fn check_client_name(name: &[u8]) -> Result<(), Refusal> {
    if name.len() > MAX_CLIENT_NAME {
        return Err(format!(
            "ERR client names are at most {MAX_CLIENT_NAME} bytes long"
        ));
    }
    if name.iter().all(|b| (b'!'..=b'~').contains(b)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.".into())
    }
}

fn client(args: Args<'_>) -> Result<Command<'_>, Refusal> {
    let sub = args.get(1);
    let n = args.len();
    let is = |word: &str| sub.eq_ignore_ascii_case(word.as_bytes());
    if is("SETNAME") && n == 3 {
        check_client_name(args.get(2))?;
        Ok(Command::ClientSetName(args.get(2)))
    } else if is("GETNAME") && n == 2 {
        Ok(Command::ClientGetName)
    } else if is("ID") && n == 2 {
        Ok(Command::ClientId)
    } else if is("SETINFO") && n == 4 {
        let attribute = args.get(2);
        if attribute.eq_ignore_ascii_case(b"LIB-NAME") || attribute.eq_ignore_ascii_case(b"LIB-VER")
        {
            Ok(Command::ClientSetInfo)
        } else {
            Err(format!("ERR Unrecognized option '{}'", quoted(attribute)))
        }
    } else if ["SETNAME", "GETNAME", "ID", "SETINFO"]
        .iter()
        .any(|w| is(w))
    {
        Err(wrong_arity(&format!(
            "client|{}",
            quoted(sub).to_ascii_lowercase()
        )))
    } else {
        Err(format!(
            "ERR unknown subcommand '{}'. gctr supports CLIENT SETNAME, GETNAME, ID and SETINFO",
            quoted(sub)
        ))
    }
}

fn command(args: Args<'_>) -> Result<Command<'_>, Refusal> {
    if args.len() == 1 {
        return Ok(Command::CommandInfo(args.skip(1)));
    }
    let sub = args.get(1);
    if sub.eq_ignore_ascii_case(b"COUNT") {
        if args.len() != 2 {
            return Err(wrong_arity("command|count"));
        }
        Ok(Command::CommandCount)
    } else if sub.eq_ignore_ascii_case(b"INFO") {
        Ok(Command::CommandInfo(args.skip(2)))
    } else if sub.eq_ignore_ascii_case(b"DOCS") {
        Ok(Command::CommandDocs(args.skip(2)))
    } else {
        Err(format!(
            "ERR unknown subcommand '{}'. gctr supports COMMAND, COMMAND COUNT, COMMAND INFO and COMMAND DOCS",
            quoted(sub)
        ))
    }
}

fn config(args: Args<'_>) -> Result<Command<'_>, Refusal> {
    let sub = args.get(1);
    if !sub.eq_ignore_ascii_case(b"GET") {
        return Err(format!(
            "ERR unknown subcommand '{}'. gctr supports CONFIG GET only: its settings are command-line flags",
            quoted(sub)
        ));
    }
    if args.len() < 3 {
        return Err(wrong_arity("config|get"));
    }
    Ok(Command::ConfigGet(args.skip(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `words` laid end to end, and where each one is.
    fn laid_out(words: &[&[u8]]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut ranges = Vec::new();
        let mut at = 0;
        for w in words {
            ranges.push(at..at + w.len());
            at += w.len();
        }
        (words.concat(), ranges)
    }

    /// Parses `words` as one request.
    fn check(words: &[&[u8]]) -> Result<String, Refusal> {
        let (bytes, ranges) = laid_out(words);
        parse(Args::new(&bytes, &ranges)).map(|c| format!("{c:?}"))
    }

    fn op_of(words: &[&[u8]]) -> Result<(OpKind, u64), Refusal> {
        let (bytes, ranges) = laid_out(words);
        match parse(Args::new(&bytes, &ranges))? {
            Command::Op(op) => Ok((op.kind, op.amount)),
            other => panic!("not an op: {other:?}"),
        }
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(check(&[b"iNcR", b"a"]), check(&[b"INCR", b"a"]));
        assert_eq!(lookup(b"MGet").map(|s| s.name), Some("mget"));
        assert!(lookup(b"mgetx").is_none());
    }

    #[test]
    fn increments_decrements_and_signs() {
        use OpKind::{Decrement, Increment};
        assert_eq!(op_of(&[b"INCR", b"k"]), Ok((Increment, 1)));
        assert_eq!(op_of(&[b"DECR", b"k"]), Ok((Decrement, 1)));
        assert_eq!(op_of(&[b"INCRBY", b"k", b"5"]), Ok((Increment, 5)));
        assert_eq!(op_of(&[b"INCRBY", b"k", b"-5"]), Ok((Decrement, 5)));
        assert_eq!(op_of(&[b"DECRBY", b"k", b"-5"]), Ok((Increment, 5)));
        assert_eq!(
            op_of(&[b"DECRBY", b"k", b"9223372036854775807"]),
            Ok((Decrement, i64::MAX as u64))
        );
        assert_eq!(
            check(&[b"INCRBY", b"k", b"0"]),
            Ok("Value(\"k\")".to_owned())
        );
        for amount in [&b"x"[..], b"1.5", b"+1", b"", b"9223372036854775808"] {
            assert_eq!(check(&[b"INCRBY", b"k", amount]), Err(not_an_integer()));
        }
        for cmd in [&b"INCRBY"[..], b"DECRBY"] {
            assert_eq!(
                check(&[cmd, b"k", b"-9223372036854775808"]),
                Err("ERR increment or decrement would overflow".to_owned())
            );
        }
    }

    #[test]
    fn keys_follow_the_counter_name_rules() {
        assert!(check(&[b"GET", &[b'k'; 128]]).is_ok());
        for bad in [&[b'k'; 129][..], b"", b"a\nb", b"\xff"] {
            let refusal = check(&[b"INCR", bad]).unwrap_err();
            assert!(refusal.starts_with("ERR invalid counter name"), "{refusal}");
            assert!(check(&[b"MGET", b"ok", bad]).is_err());
        }
    }

    #[test]
    fn unknown_commands_and_wrong_arity_are_refused() {
        let refusal = check(&[b"SET", b"k", b"1"]).unwrap_err();
        assert!(
            refusal.starts_with("ERR unknown command 'SET'") && refusal.contains("PN-counters"),
            "{refusal}"
        );
        assert!(check(&[b"DEL\r\n", b"k"]).unwrap_err().contains("'DEL??'"));
        assert_eq!(
            check(&[b"INCR"]),
            Err("ERR wrong number of arguments for 'incr' command".to_owned())
        );
        assert!(check(&[b"INCR", b"a", b"b"]).is_err());
        assert!(check(&[b"PING", b"a", b"b"]).is_err());
        assert!(check(&[b"MGET"]).is_err());
    }

    #[test]
    fn connection_commands() {
        assert_eq!(check(&[b"SELECT", b"0"]), Ok("Select".into()));
        assert!(check(&[b"SELECT", b"1"])
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(
            check(&[b"HELLO", b"2"]),
            Ok("Hello { name: None, token: None }".into())
        );
        assert!(check(&[b"HELLO", b"3"]).unwrap_err().starts_with("NOPROTO"));
        assert!(check(&[b"HELLO", b"x"]).unwrap_err().starts_with("ERR"));
        assert_eq!(
            check(&[b"HELLO", b"2", b"AUTH", b"u", b"p"]),
            Ok("Hello { name: None, token: Some([112]) }".into())
        );
        assert!(check(&[b"HELLO", b"2", b"SETNAME", b"me"]).is_ok());
        assert!(check(&[b"HELLO", b"2", b"SETNAME"]).is_err());
        assert_eq!(check(&[b"AUTH", b"p"]), Ok("Auth([112])".into()));
        assert_eq!(
            check(&[b"AUTH", b"default", b"p"]),
            Ok("Auth([112])".into())
        );
        assert!(check(&[b"AUTH", b"a", b"b", b"c"]).is_err());
        assert!(check(&[b"CLIENT", b"SETNAME", b"a b"]).is_err());
        assert!(check(&[b"CLIENT", b"setname", b"worker-1"]).is_ok());
        assert!(check(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"]).is_ok());
        assert!(check(&[b"CLIENT", b"SETINFO", b"OTHER", b"x"]).is_err());
        assert!(check(&[b"CLIENT", b"KILL", b"x"])
            .unwrap_err()
            .contains("unknown subcommand"));
        assert!(check(&[b"CLIENT", b"ID", b"x"])
            .unwrap_err()
            .contains("wrong number"));
        assert!(check(&[b"CONFIG", b"SET", b"a", b"b"]).is_err());
        assert!(check(&[b"CONFIG", b"GET"]).is_err());
        assert!(check(&[b"CONFIG", b"get", b"save"]).is_ok());
        assert!(check(&[b"COMMAND", b"COUNT", b"x"]).is_err());
        assert!(check(&[b"COMMAND", b"LIST"]).is_err());
    }
}

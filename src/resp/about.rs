//! What the RESP server says about itself: `COMMAND` (and `INFO`, `DOCS`, `COUNT`),
//! `HELLO`, `INFO` and `CONFIG GET`, so that redis-cli, redis-benchmark and client
//! libraries start cleanly and operators see gctr's own figures in Redis's shapes.
//!
//! `INFO` and `CONFIG GET` are rendered from the node's `GET /status` JSON (the event
//! loop's `Query::Status`) plus the RESP server's own connection figures; fields missing
//! from the status read as 0 or empty rather than failing the command.

use super::command::{Args, Spec, COMMANDS};
use super::reply;
use serde_json::Value;
use std::io::Write;

/// The Redis version whose RESP2 commands gctr follows, reported as `redis_version` for
/// clients that check it.
pub const REDIS_VERSION: &str = "7.0.0";

/// The RESP server's own figures, shown by `INFO` and `CONFIG GET`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerFigures {
    pub port: u16,
    pub connected_clients: usize,
    pub max_clients: usize,
    pub total_connections: u64,
    pub rejected_connections: u64,
    pub max_bulk: usize,
}

/// `COMMAND` (no names: every command) or `COMMAND INFO name ...` (nil for an unknown name).
pub fn command_info(out: &mut Vec<u8>, names: Args<'_>) {
    if names.is_empty() {
        reply::array(out, COMMANDS.len());
        COMMANDS.iter().for_each(|spec| describe(out, spec));
        return;
    }
    reply::array(out, names.len());
    for name in names.iter() {
        match super::command::lookup(name) {
            Some(spec) => describe(out, spec),
            None => reply::nil(out),
        }
    }
}

/// One command in Redis 7's `COMMAND` shape: name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specifications, subcommands.
fn describe(out: &mut Vec<u8>, spec: &Spec) {
    reply::array(out, 10);
    reply::bulk(out, spec.name.as_bytes());
    reply::integer(out, spec.arity);
    reply::array(out, spec.flags.len());
    spec.flags.iter().for_each(|f| reply::simple(out, f));
    reply::integer(out, spec.keys.0);
    reply::integer(out, spec.keys.1);
    reply::integer(out, spec.keys.2);
    let categories = acl_categories(spec);
    reply::array(out, categories.len());
    categories.iter().for_each(|c| reply::simple(out, c));
    reply::array(out, 0);
    reply::array(out, 0);
    reply::array(out, 0);
}

fn acl_categories(spec: &Spec) -> Vec<&'static str> {
    let mut categories = Vec::with_capacity(3);
    if spec.flags.contains(&"write") {
        categories.push("@write");
    }
    if spec.flags.contains(&"readonly") {
        categories.push("@read");
    }
    categories.push(if spec.flags.contains(&"fast") {
        "@fast"
    } else {
        "@slow"
    });
    categories.push(match spec.group {
        "string" => "@string",
        "generic" => "@keyspace",
        "connection" => "@connection",
        "transactions" => "@transaction",
        _ => "@admin",
    });
    categories
}

/// `COMMAND DOCS [name ...]`: name → summary, since, group, complexity; unknown names
/// are left out, as Redis does.
pub fn command_docs(out: &mut Vec<u8>, names: Args<'_>) {
    let specs: Vec<&Spec> = if names.is_empty() {
        COMMANDS.iter().collect()
    } else {
        names.iter().filter_map(super::command::lookup).collect()
    };
    reply::array(out, specs.len() * 2);
    for spec in specs {
        reply::bulk(out, spec.name.as_bytes());
        reply::array(out, 8);
        for (key, value) in [
            ("summary", spec.summary),
            ("since", "1.0.0"),
            ("group", spec.group),
            ("complexity", "O(1) per key"),
        ] {
            reply::bulk(out, key.as_bytes());
            reply::bulk(out, value.as_bytes());
        }
    }
}

pub fn command_count(out: &mut Vec<u8>) {
    reply::integer(out, COMMANDS.len() as i64);
}

/// `HELLO`'s map, flattened into an array as RESP2 does.
pub fn hello(out: &mut Vec<u8>, client_id: u64) {
    reply::array(out, 14);
    reply::bulk(out, b"server");
    reply::bulk(out, b"gctr");
    reply::bulk(out, b"version");
    reply::bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
    reply::bulk(out, b"proto");
    reply::integer(out, 2);
    reply::bulk(out, b"id");
    reply::integer(out, client_id as i64);
    reply::bulk(out, b"mode");
    reply::bulk(out, b"standalone");
    reply::bulk(out, b"role");
    reply::bulk(out, b"master");
    reply::bulk(out, b"modules");
    reply::array(out, 0);
}

const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "persistence",
    "stats",
    "replication",
    "keyspace",
];

/// `INFO [section ...]` as one bulk string. No section, `default`, `all` or
/// `everything` give every section; unknown names are ignored, as Redis does.
pub fn info(out: &mut Vec<u8>, sections: Args<'_>, status: &Value, figures: &ServerFigures) {
    let every = sections.is_empty()
        || sections.iter().any(|s| {
            [&b"default"[..], b"all", b"everything"]
                .iter()
                .any(|w| s.eq_ignore_ascii_case(w))
        });
    let mut text = Vec::new();
    for section in SECTIONS {
        if every
            || sections
                .iter()
                .any(|s| s.eq_ignore_ascii_case(section.as_bytes()))
        {
            if !text.is_empty() {
                text.extend_from_slice(b"\r\n");
            }
            info_section(&mut text, section, status, figures);
        }
    }
    reply::bulk(out, &text);
}

fn info_section(text: &mut Vec<u8>, section: &str, status: &Value, figures: &ServerFigures) {
    let num = |pointer: &str| status.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let string = |pointer: &str| {
        status
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let wal = status.pointer("/storage/kind").and_then(Value::as_str) == Some("wal");
    let _ = write!(
        text,
        "# {}{}\r\n",
        section[..1].to_uppercase(),
        &section[1..]
    );
    let mut field = |key: &str, value: &dyn std::fmt::Display| {
        let _ = write!(text, "{key}:{value}\r\n");
    };
    match section {
        "server" => {
            let uptime = num("/uptime_ms") / 1000;
            field("redis_version", &REDIS_VERSION);
            field("gctr_version", &env!("CARGO_PKG_VERSION"));
            field("redis_mode", &"standalone");
            field("os", &std::env::consts::OS);
            field("arch_bits", &(usize::BITS));
            field("process_id", &std::process::id());
            field("tcp_port", &figures.port);
            field("uptime_in_seconds", &uptime);
            field("uptime_in_days", &(uptime / 86_400));
            field("gctr_node", &string("/name"));
            field("gctr_origin", &string("/origin"));
            field("gctr_gossip_addr", &string("/gossip_addr"));
            field("gctr_http_addr", &string("/http_addr"));
        }
        "clients" => {
            field("connected_clients", &figures.connected_clients);
            field("maxclients", &figures.max_clients);
        }
        "persistence" => {
            let failed = status
                .pointer("/storage/wal/failed")
                .and_then(Value::as_bool);
            field("loading", &0);
            field("aof_enabled", &u8::from(wal));
            field(
                "aof_last_write_status",
                &if failed == Some(true) { "err" } else { "ok" },
            );
            field("gctr_storage", &string("/storage/kind"));
            let durable = status.pointer("/storage/durable").and_then(Value::as_bool);
            field("gctr_durable", &u8::from(durable == Some(true)));
            if wal {
                field("gctr_fsync_policy", &string("/storage/wal/fsync_policy"));
                field("gctr_wal_last_seq", &num("/storage/wal/last_seq"));
                field("gctr_wal_segments", &num("/storage/wal/segments"));
                field("gctr_wal_bytes", &num("/storage/wal/bytes"));
                field("gctr_wal_fsyncs", &num("/storage/wal/fsyncs"));
                field("gctr_snapshots_taken", &num("/storage/wal/snapshots_taken"));
            }
        }
        "stats" => {
            field("total_connections_received", &figures.total_connections);
            field("rejected_connections", &figures.rejected_connections);
            field("gctr_batches", &num("/requests/batches"));
            field("gctr_ops", &num("/requests/ops"));
            field("gctr_refused_ops", &num("/requests/refused"));
            field("gctr_storage_failures", &num("/requests/storage_failures"));
        }
        "replication" => {
            // Every gctr node takes writes; its peers are replicas of the same kind.
            field("role", &"master");
            field("connected_slaves", &0);
            field("gctr_peers_known", &num("/peers/known"));
            field("gctr_peers_reachable", &num("/peers/reachable"));
            field("gctr_origins", &num("/state/origins"));
            field("gctr_gossip_rounds", &num("/gossip/rounds"));
        }
        _ => {
            let keys = num("/state/counters");
            field("db0", &format!("keys={keys},expires=0,avg_ttl=0"));
        }
    }
}

/// `CONFIG GET pattern ...`: each setting whose name matches a pattern (`*` and `?`
/// globs), as name, value pairs.
pub fn config_get(out: &mut Vec<u8>, patterns: Args<'_>, status: &Value, figures: &ServerFigures) {
    let storage = status.pointer("/storage/kind").and_then(Value::as_str);
    let policy = status
        .pointer("/storage/wal/fsync_policy")
        .and_then(Value::as_str)
        .unwrap_or("");
    let appendfsync = match (storage, policy) {
        (Some("wal"), "always") => "always",
        (Some("wal"), "never") | (Some("wal"), "") | (None, _) => "no",
        (Some("wal"), _) => "everysec",
        (Some(_), _) => "no",
    };
    let settings: [(&str, String); 8] = [
        ("save", String::new()),
        (
            "appendonly",
            if storage == Some("wal") { "yes" } else { "no" }.into(),
        ),
        ("appendfsync", appendfsync.into()),
        ("databases", "1".into()),
        ("maxclients", figures.max_clients.to_string()),
        ("port", figures.port.to_string()),
        ("timeout", "0".into()),
        ("proto-max-bulk-len", figures.max_bulk.to_string()),
    ];
    let matching: Vec<&(&str, String)> = settings
        .iter()
        .filter(|(name, _)| patterns.iter().any(|p| glob(p, name.as_bytes())))
        .collect();
    reply::array(out, matching.len() * 2);
    for (name, value) in matching {
        reply::bulk(out, name.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
}

/// Whether `text` matches `pattern`, where `*` is any run of bytes and `?` any one
/// byte; ASCII case is ignored. Linear backtracking over the last `*`.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Calls `f` with `words` as arguments.
    fn with_args<T>(words: &[&str], f: impl FnOnce(Args<'_>) -> T) -> T {
        let bytes = words.concat().into_bytes();
        let mut ranges = Vec::new();
        let mut at = 0;
        for w in words {
            ranges.push(at..at + w.len());
            at += w.len();
        }
        f(Args::new(&bytes, &ranges))
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b"save"));
        assert!(glob(b"SAVE", b"save"));
        assert!(glob(b"append*", b"appendfsync"));
        assert!(glob(b"a?pendonly", b"appendonly"));
        assert!(glob(b"*o*n*", b"appendonly"));
        assert!(!glob(b"append", b"appendonly"));
        assert!(!glob(b"x*", b"save"));
        assert!(!glob(b"", b"save"));
    }

    #[test]
    fn config_get_answers_what_redis_benchmark_asks() {
        let status =
            json!({"storage": {"kind": "wal", "durable": true, "wal": {"fsync_policy": "always"}}});
        let figures = ServerFigures::default();
        let mut out = Vec::new();
        with_args(&["save", "appendonly"], |a| {
            config_get(&mut out, a, &status, &figures)
        });
        assert_eq!(
            out,
            b"*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
        );
        out.clear();
        let memory = json!({"storage": {"kind": "memory"}});
        with_args(&["appendfsync"], |a| {
            config_get(&mut out, a, &memory, &figures)
        });
        assert_eq!(out, b"*2\r\n$11\r\nappendfsync\r\n$2\r\nno\r\n");
        out.clear();
        with_args(&["nothing"], |a| config_get(&mut out, a, &status, &figures));
        assert_eq!(out, b"*0\r\n");
    }

    #[test]
    fn info_sections_are_chosen_by_name() {
        let status =
            json!({"name": "n1", "peers": {"known": 2, "reachable": 1}, "state": {"counters": 7}});
        let figures = ServerFigures {
            connected_clients: 3,
            ..ServerFigures::default()
        };
        let mut out = Vec::new();
        with_args(&["CLIENTS", "keyspace"], |a| {
            info(&mut out, a, &status, &figures)
        });
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("# Clients\r\nconnected_clients:3\r\n"),
            "{text}"
        );
        assert!(text.contains("db0:keys=7,expires=0"), "{text}");
        assert!(!text.contains("# Server"), "{text}");
        let mut out = Vec::new();
        with_args(&[], |a| info(&mut out, a, &status, &figures));
        let text = String::from_utf8(out).unwrap();
        for section in [
            "# Server",
            "# Persistence",
            "# Replication",
            "gctr_peers_reachable:1",
            "gctr_node:n1",
        ] {
            assert!(text.contains(section), "{section} missing from {text}");
        }
    }

    #[test]
    fn command_info_has_every_command_and_nil_for_unknown_ones() {
        let mut out = Vec::new();
        with_args(&[], |a| command_info(&mut out, a));
        assert!(out
            .starts_with(format!("*{}\r\n*10\r\n$4\r\nincr\r\n:2\r\n", COMMANDS.len()).as_bytes()));
        out.clear();
        with_args(&["GET", "nope"], |a| command_info(&mut out, a));
        assert!(out.starts_with(b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n"));
        assert!(out.ends_with(b"$-1\r\n"));
        out.clear();
        with_args(&["mget"], |a| command_docs(&mut out, a));
        assert!(out.starts_with(b"*2\r\n$4\r\nmget\r\n*8\r\n$7\r\nsummary\r\n"));
    }
}

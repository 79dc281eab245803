//! What the RESP server says about itself: `COMMAND` (and `INFO`, `DOCS`, `COUNT`),
//! `HELLO`, `INFO` and `CONFIG GET`, so that redis-cli, redis-benchmark and client
//! libraries start cleanly and operators see gctr's own figures in Redis's shapes.
//!
//! `INFO` and `CONFIG GET` are rendered from the node's typed status (the event loop's
//! `Query::Status`, the same model `GET /status` serializes) plus the RESP server's own
//! connection figures.

use super::command::{Args, Spec, COMMANDS};
use super::reply;
use crate::status::{NodeStatus, StorageStatus};
use crate::wal::WalStatus;
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
pub fn info(out: &mut Vec<u8>, sections: Args<'_>, status: &NodeStatus, figures: &ServerFigures) {
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

fn info_section(text: &mut Vec<u8>, section: &str, status: &NodeStatus, figures: &ServerFigures) {
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
        "server" => server_section(&mut field, status, figures),
        "clients" => {
            field("connected_clients", &figures.connected_clients);
            field("maxclients", &figures.max_clients);
        }
        "persistence" => persistence_section(&mut field, status),
        "stats" => {
            let r = &status.requests;
            field("total_connections_received", &figures.total_connections);
            field("rejected_connections", &figures.rejected_connections);
            field("gctr_batches", &r.batches);
            field("gctr_ops", &r.ops);
            field("gctr_refused_ops", &r.refused);
            field("gctr_storage_failures", &r.storage_failures);
        }
        "replication" => {
            // Every gctr node takes writes; its peers are replicas of the same kind.
            field("role", &"master");
            field("connected_slaves", &0);
            field("gctr_peers_known", &status.peers.known);
            field("gctr_peers_reachable", &status.peers.reachable);
            field("gctr_origins", &status.state.origins);
            field("gctr_gossip_rounds", &status.gossip.stats.rounds);
            field(
                "gctr_gossip_rounds_skipped",
                &status.gossip.stats.rounds_skipped,
            );
        }
        _ => {
            let keys = status.state.counters;
            field("db0", &format!("keys={keys},expires=0,avg_ttl=0"));
        }
    }
}

type Field<'a> = dyn FnMut(&str, &dyn std::fmt::Display) + 'a;

fn server_section(field: &mut Field, status: &NodeStatus, figures: &ServerFigures) {
    let uptime = status.uptime_ms / 1000;
    field("redis_version", &REDIS_VERSION);
    field("gctr_version", &env!("CARGO_PKG_VERSION"));
    field("redis_mode", &"standalone");
    field("os", &std::env::consts::OS);
    field("arch_bits", &(usize::BITS));
    field("process_id", &std::process::id());
    field("tcp_port", &figures.port);
    field("uptime_in_seconds", &uptime);
    field("uptime_in_days", &(uptime / 86_400));
    field("gctr_node", &status.name);
    field("gctr_origin", &status.origin);
    field("gctr_gossip_addr", &status.gossip_addr);
    field("gctr_http_addr", &status.http_addr);
}

fn persistence_section(field: &mut Field, status: &NodeStatus) {
    let (kind, durable, wal) = storage(status);
    field("loading", &0);
    field("aof_enabled", &u8::from(kind == "wal"));
    let failed = wal.is_some_and(|w| w.failed);
    field("aof_last_write_status", &if failed { "err" } else { "ok" });
    field("gctr_storage", &kind);
    field("gctr_durable", &u8::from(durable));
    if let Some(w) = wal {
        field("gctr_fsync_policy", &w.fsync_policy);
        field("gctr_wal_last_seq", &w.last_seq);
        field("gctr_wal_segments", &w.segments);
        field("gctr_wal_bytes", &w.bytes);
        field("gctr_wal_fsyncs", &w.fsyncs);
        field("gctr_snapshots_taken", &w.snapshots_taken);
    }
}

/// The storage's kind, whether it is durable, and the WAL's figures when it has a WAL.
fn storage(status: &NodeStatus) -> (&'static str, bool, Option<&WalStatus>) {
    match &status.storage {
        StorageStatus::Memory(_) => ("memory", false, None),
        StorageStatus::Wal(w) => ("wal", w.durable, w.wal.as_ref()),
    }
}

/// `CONFIG GET pattern ...`: each setting whose name matches a pattern (`*` and `?`
/// globs), as name, value pairs.
pub fn config_get(
    out: &mut Vec<u8>,
    patterns: Args<'_>,
    status: &NodeStatus,
    figures: &ServerFigures,
) {
    let (kind, _, wal) = storage(status);
    let appendfsync = match wal.map(|w| w.fsync_policy.as_str()) {
        Some("always") => "always",
        Some("never") | None => "no",
        Some(_) => "everysec",
    };
    let settings: [(&str, String); 8] = [
        ("save", String::new()),
        (
            "appendonly",
            if kind == "wal" { "yes" } else { "no" }.into(),
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

    fn wal_status(policy: &str) -> NodeStatus {
        let wal = crate::status::WalStorageStatus {
            durable: policy == "always",
            wal: Some(WalStatus {
                fsync_policy: policy.into(),
                ..WalStatus::default()
            }),
            ..Default::default()
        };
        NodeStatus {
            storage: StorageStatus::Wal(Box::new(wal)),
            ..NodeStatus::default()
        }
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
        let status = wal_status("always");
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
        let memory = NodeStatus::default();
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
        let mut status = NodeStatus {
            name: "n1".into(),
            ..NodeStatus::default()
        };
        status.peers.known = 2;
        status.peers.reachable = 1;
        status.state.counters = 7;
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

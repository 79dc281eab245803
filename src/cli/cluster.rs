//! The client commands about the cluster as one node sees it: `gctr members` and
//! `gctr peers` (its view), `gctr join ADDR` and `gctr remove NAME` (operator changes),
//! and `gctr get --all` (every live member asked for a counter, and whether they agree).

use super::CliError;
use crate::http::JsonClient;
use crate::node::views::{CounterView, MemberEntryView, MembersView, PeerView, PeersView};
use serde::Serialize;
use std::time::Duration;

/// `gctr members`: every member with its state, the node itself included.
pub fn members(client: &JsonClient, json: bool) -> Result<(), CliError> {
    let view: MembersView = client.get("/members")?;
    if json {
        return print_json(&view);
    }
    let rows: Vec<Vec<String>> = view
        .members
        .iter()
        .map(|m| {
            let me = if m.name == view.me { " (self)" } else { "" };
            vec![
                format!("{}{me}", m.name),
                m.state.clone(),
                m.gossip_addr.clone(),
                m.http_addr.clone(),
                ago(Some(m.since_ms)),
                m.origin.clone(),
            ]
        })
        .collect();
    print_rows(
        &["NAME", "STATE", "GOSSIP", "HTTP", "SINCE", "ORIGIN"],
        &rows,
    );
    let count = |state: &str| view.members.iter().filter(|m| m.state == state).count();
    println!(
        "{} members: {} alive, {} suspect, {} dead, {} left",
        view.members.len(),
        count("alive"),
        count("suspect"),
        count("dead"),
        count("left")
    );
    Ok(())
}

/// `gctr peers`: the node itself, then every other member and whether it is reachable.
pub fn peers(client: &JsonClient, json: bool) -> Result<(), CliError> {
    let view: PeersView = client.get("/peers")?;
    if json {
        return print_json(&view);
    }
    println!(
        "node {} ({}) gossip {} http {}",
        view.me.name, view.me.origin, view.me.gossip_addr, view.me.http_addr
    );
    if view.peers.is_empty() {
        println!("no peers known");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = view.peers.iter().map(peer_row).collect();
    print_rows(
        &["NAME", "GOSSIP", "HTTP", "STATE", "REACHABLE", "LAST HEARD"],
        &rows,
    );
    let reachable = view.peers.iter().filter(|p| p.reachable).count();
    println!("{} peers, {reachable} reachable", view.peers.len());
    Ok(())
}

fn peer_row(p: &PeerView) -> Vec<String> {
    vec![
        p.name.clone().unwrap_or_else(|| "?".into()),
        p.gossip_addr.clone(),
        p.http_addr.clone().unwrap_or_else(|| "?".into()),
        p.state.clone(),
        if p.reachable { "yes" } else { "no" }.into(),
        ago(p.last_heard_ms_ago),
    ]
}

/// `gctr join ADDR`: the node joins the cluster through the node at `addr`.
pub fn join(client: &JsonClient, addr: &str, json: bool) -> Result<(), CliError> {
    let answer: serde_json::Value =
        client.post_json("/members", &serde_json::json!({ "addr": addr }))?;
    if json {
        return print_json(&answer);
    }
    println!(
        "joining through {}",
        answer["joining"].as_str().unwrap_or(addr)
    );
    Ok(())
}

/// `gctr remove NAME`: the member `name` is marked left cluster-wide.
pub fn remove(client: &JsonClient, name: &str, json: bool) -> Result<(), CliError> {
    let path = format!("/members/{}", super::client::path_segment(name));
    let answer: serde_json::Value = client.delete(&path)?;
    if json {
        return print_json(&answer);
    }
    println!("removed {name}");
    Ok(())
}

/// One live member's answer in `get --all`.
#[derive(Debug, Serialize)]
struct NodeValue {
    name: String,
    http_addr: String,
    state: String,
    value: Option<i64>,
    error: Option<String>,
}

/// A dead or left member, listed apart and not asked.
#[derive(Debug, Serialize)]
struct Gone {
    name: String,
    state: String,
}

#[derive(Debug, Serialize)]
struct AllView {
    counter: String,
    /// The live members (alive or suspect) and their values.
    nodes: Vec<NodeValue>,
    /// Members that are dead or left: not asked.
    gone: Vec<Gone>,
    /// Every live member answered, with the same value.
    agree: bool,
}

/// `gctr get --all`: asks the node for its members, then every live member for the
/// counter. Exit 0 when every live member agrees (dead and left members listed apart),
/// 1 when live members disagree or one of them could not be asked.
pub fn get_all(
    client: &JsonClient,
    counter: &str,
    counter_path: &str,
    json: bool,
) -> Result<(), CliError> {
    let view: MembersView = client.get("/members")?;
    let live = |m: &&MemberEntryView| matches!(m.state.as_str(), "alive" | "suspect");
    let nodes: Vec<NodeValue> = view
        .members
        .iter()
        .filter(live)
        .map(|m| ask(client, m, counter_path))
        .collect();
    let gone = view
        .members
        .iter()
        .filter(|m| !live(m))
        .map(|m| Gone {
            name: m.name.clone(),
            state: m.state.clone(),
        })
        .collect();
    let first = nodes.first().and_then(|n| n.value);
    let agree = nodes.iter().all(|n| n.value.is_some() && n.value == first);
    let all = AllView {
        counter: counter.to_owned(),
        nodes,
        gone,
        agree,
    };
    if json {
        print_json(&all)?;
    } else {
        print_all(&all);
    }
    if all.agree {
        Ok(())
    } else if all.nodes.iter().any(|n| n.value.is_none()) {
        Err(CliError::Failed(
            "some live members could not be asked".into(),
        ))
    } else {
        Err(CliError::Failed(format!(
            "the live members disagree on {counter:?} (still converging, or partitioned)"
        )))
    }
}

/// Asks member `m` through a client like `client` (same token, TLS and timeouts).
fn ask(client: &JsonClient, m: &MemberEntryView, path: &str) -> NodeValue {
    let (value, error) = match client.at(&m.http_addr).get::<CounterView>(path) {
        Ok(v) => (Some(v.value), None),
        Err(e) => (None, Some(e.to_string())),
    };
    NodeValue {
        name: m.name.clone(),
        http_addr: m.http_addr.clone(),
        state: m.state.clone(),
        value,
        error,
    }
}

fn print_all(view: &AllView) {
    let rows: Vec<Vec<String>> = view
        .nodes
        .iter()
        .map(|n| {
            let value = match (&n.value, &n.error) {
                (Some(v), _) => v.to_string(),
                (None, Some(e)) => format!("error: {e}"),
                (None, None) => "?".into(),
            };
            vec![n.name.clone(), n.http_addr.clone(), n.state.clone(), value]
        })
        .collect();
    print_rows(&["NODE", "HTTP", "STATE", "VALUE"], &rows);
    if view.agree {
        println!("all {} nodes agree", view.nodes.len());
    } else {
        println!("the nodes do NOT agree");
    }
    if !view.gone.is_empty() {
        let gone: Vec<String> = view
            .gone
            .iter()
            .map(|g| format!("{} ({})", g.name, g.state))
            .collect();
        println!("not asked: {}", gone.join(", "));
    }
}

/// Prints a table with a header, columns padded to their widest cell.
pub(super) fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths = vec![0; header.len()];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

fn ago(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!(
            "{} ago",
            humantime::format_duration(Duration::from_millis(ms))
        ),
        None => "never".into(),
    }
}

pub(super) fn print_json(view: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string(view).map_err(|e| CliError::Failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}

//! Real `gctr node` processes whose digests outgrow a Syn: an ephemeral node (no WAL)
//! restarted a hundred times leaves a hundred origins behind, and the three nodes then
//! gossip by summaries and pages. Without eager push, what one of them learns reaches
//! the others by anti-entropy alone, exactly; a key retried on another node counts once
//! and resolves (which takes every member's whole digest).

mod common;

use common::cluster::{
    apply_op, figure, node_addrs, start_node, start_node_anywhere, wait_converged, TestNode,
};
use common::{agent, wait_until};
use std::collections::BTreeMap;
use std::time::Duration;

/// Restarts of the ephemeral node: a hundred origins of a 16-byte name take about 2.7 KB
/// of digest, over the 2 KiB a Syn carries whole.
const RESTARTS: usize = 100;

fn keyed_increment(http: &str, key: &str) -> u16 {
    let url = format!("http://{http}/counters/keyed/increment?by=3");
    match agent().post(&url).set("Idempotency-Key", key).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("POST {url}: {e}"),
    }
}

#[test]
fn nodes_that_know_a_hundred_origins_converge_by_summaries_and_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let quiet = ["--no-eager-push", "--log-level", "info"];
    let (a_gossip, a_http) = node_addrs();
    let a = start_node(dir.path(), "a", (&a_gossip, &a_http), &[], &quiet);
    let (b_gossip, b_http) = node_addrs();
    let b = start_node(dir.path(), "b", (&b_gossip, &b_http), &[&a.gossip], &quiet);

    let mut expected = BTreeMap::new();
    let mut ephemeral: Option<TestNode> = None;
    for i in 1..=RESTARTS {
        if let Some(mut previous) = ephemeral.take() {
            previous.proc.kill();
        }
        let e = start_node_anywhere(dir.path(), "ephemeral-node-0", &[&a.gossip], &quiet);
        apply_op(&agent(), &e.http, "restarts", true, 1);
        // Until a holds what this run wrote, its origin is not yet one a knows.
        let holds = |i: usize| {
            common::cluster::counters(&a.http).and_then(|c| c.get("restarts").copied())
                == Some(i as i64)
        };
        wait_until(
            &format!("a to hold restart {i}"),
            Duration::from_secs(10),
            || holds(i),
        );
        ephemeral = Some(e);
    }
    // The last run stays: a member that is gone holds keys back until it is reaped.
    let e = ephemeral.expect("the last run");
    let nodes = [&a, &b, &e];
    expected.insert("restarts".to_owned(), RESTARTS as i64);
    wait_converged(&nodes, &expected, Duration::from_secs(30));
    assert!(
        figure(&a, &["state", "origins"]) >= RESTARTS as u64,
        "the restarts left their origins"
    );

    // Writes to a reach the others by anti-entropy alone, which now goes by summary.
    for _ in 0..20 {
        apply_op(&agent(), &a.http, "after", true, 2);
    }
    expected.insert("after".to_owned(), 40);
    wait_converged(&nodes, &expected, Duration::from_secs(30));
    // Each node learned of the writes by a summary and its pages: its own round's
    // summary answered with a page, or a peer's summary that it answered with its page.
    let took_part = |node: &TestNode| {
        let summaries = figure(node, &["gossip", "frames_in", "summary"]);
        let pages_in = figure(node, &["gossip", "frames_in", "page"]);
        let pages_out = figure(node, &["gossip", "frames_out", "page"]);
        summaries > 0 && pages_in + pages_out > 0
    };
    wait_until(
        "every node in a summary and page exchange",
        Duration::from_secs(10),
        || nodes.iter().all(|n| took_part(n)),
    );
    assert!(
        nodes
            .iter()
            .map(|n| figure(n, &["gossip", "frames_in", "page"]))
            .sum::<u64>()
            > 0,
        "pages were sent and received"
    );

    // A key accepted on a and retried on b counts once, and resolves everywhere.
    assert_eq!(keyed_increment(&a.http, "order-1"), 200);
    assert_eq!(keyed_increment(&b.http, "order-1"), 200);
    expected.insert("keyed".to_owned(), 3);
    wait_converged(&nodes, &expected, Duration::from_secs(30));
    wait_until("every acceptance resolved", Duration::from_secs(30), || {
        nodes.iter().all(|n| figure(n, &["keys", "live"]) == 0)
    });
    wait_converged(&nodes, &expected, Duration::from_secs(10));
}

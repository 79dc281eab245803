//! The node's `DiscoveryClient` against a real `gctr discovery` process: five clients
//! find each other, ride out a dead discovery server on their last list, refill a
//! restarted one by heartbeating, and deregister on stop. Plus the one-shot lookups.

mod common;

use common::{free_addr, http_get, wait_until, Proc};
use gctr::discovery::{
    fetch_peers, resolve, ClientConfig, DiscoveryClient, DiscoveryError, Member, NodeInfo,
};
use gctr::http::{Credentials, HttpError};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(400);
/// How long a wait for something a few ticks bring may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(15);

fn spawn_discovery(addr: SocketAddr) -> Proc {
    let port = addr.port().to_string();
    let proc = Proc::spawn(
        "discovery",
        &[
            "discovery",
            "--port",
            &port,
            "--ttl",
            "3s",
            "--log-level",
            "warn",
        ],
        None,
    );
    wait_until(
        "discovery to answer /health",
        Duration::from_secs(10),
        || matches!(http_get(&addr.to_string(), "/health"), Ok((200, _))),
    );
    proc
}

fn info(i: u16) -> NodeInfo {
    NodeInfo {
        name: format!("n{i}"),
        addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i)),
        http: SocketAddr::from(([127, 0, 0, 1], 9100 + i)),
    }
}

/// A client for node `i` whose delivered lists land in the returned log.
fn client(url: &str, i: u16) -> (DiscoveryClient, Arc<Mutex<Vec<Vec<Member>>>>) {
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let sink = delivered.clone();
    let config = ClientConfig {
        interval: INTERVAL,
        timeout: Duration::from_millis(500),
        ..ClientConfig::new(url, info(i))
    };
    let client = DiscoveryClient::start(config, move |peers| sink.lock().unwrap().push(peers))
        .expect("start the client thread");
    (client, delivered)
}

fn names(members: &[Member]) -> Vec<String> {
    members.iter().map(|m| m.name.clone()).collect()
}

fn others(i: u16, n: u16) -> Vec<String> {
    (1..=n)
        .filter(|&j| j != i)
        .map(|j| format!("n{j}"))
        .collect()
}

fn listed(url: &str) -> Vec<String> {
    fetch_peers(url, &Credentials::default())
        .map(|m| names(&m))
        .unwrap_or_default()
}

#[test]
fn five_clients_find_each_other_survive_a_dead_discovery_and_refill_a_restarted_one() {
    let addr = free_addr();
    let url = format!("http://{addr}");
    let mut discovery = spawn_discovery(addr);
    let clients: Vec<_> = (1..=5).map(|i| (i, client(&url, i))).collect();
    let started = Instant::now();

    // The list is kept before the callback gets it: wait for both.
    wait_until("every client to see the other four", PATIENCE, || {
        clients.iter().all(|(i, (c, delivered))| {
            names(&c.peers()) == others(*i, 5)
                && delivered
                    .lock()
                    .unwrap()
                    .last()
                    .is_some_and(|l| names(l) == others(*i, 5))
        })
    });
    for (i, (_, delivered)) in &clients {
        let lists = delivered.lock().unwrap();
        let last = lists.last().expect("a list was delivered");
        assert_eq!(names(last), others(*i, 5), "the callback got the list");
        assert!(lists
            .iter()
            .all(|l| l.iter().all(|m| m.name != format!("n{i}"))));
        for peer in last {
            let j: u16 = peer.name[1..].parse().expect("names are n<i>");
            assert_eq!((peer.addr, peer.http), (info(j).addr, info(j).http));
        }
    }
    eprintln!("all five saw each other after {:?}", started.elapsed());

    discovery.kill();
    let delivered_before: Vec<usize> = clients
        .iter()
        .map(|(_, (_, d))| d.lock().unwrap().len())
        .collect();
    // Not a wait for a condition: the clients must keep their lists through several
    // failed ticks, so let several intervals pass.
    std::thread::sleep(INTERVAL * 3);
    for ((i, (c, delivered)), before) in clients.iter().zip(&delivered_before) {
        assert_eq!(names(&c.peers()), others(*i, 5), "n{i} keeps its last list");
        assert!(
            delivered.lock().unwrap().len() <= before + 1,
            "no lists are delivered while discovery is down"
        );
    }
    assert!(matches!(
        fetch_peers(&url, &Credentials::default()),
        Err(DiscoveryError::Http(HttpError::Unreachable { .. }))
    ));

    let _discovery = spawn_discovery(addr);
    let restarted = Instant::now();
    wait_until(
        "the restarted discovery to list all five again",
        PATIENCE,
        || listed(&url) == others(0, 5),
    );
    eprintln!(
        "restarted discovery whole again after {:?}",
        restarted.elapsed()
    );

    let mut clients = clients;
    let (_, (c1, _)) = clients.remove(0);
    c1.stop();
    assert_eq!(listed(&url), others(1, 5), "stop() deregistered n1 at once");
    wait_until("the others to drop n1 from their lists", PATIENCE, || {
        clients.iter().all(|(i, (c, _))| {
            let mut want = others(*i, 5);
            want.retain(|n| n != "n1");
            names(&c.peers()) == want
        })
    });
}

#[test]
fn a_client_started_before_discovery_registers_once_it_is_up() {
    let addr = free_addr();
    let url = addr.to_string();
    let (c, _) = client(&url, 7);
    // Let the first attempts fail against nothing.
    std::thread::sleep(INTERVAL);
    assert!(c.peers().is_empty());
    let _discovery = spawn_discovery(addr);
    wait_until("n7 to register", PATIENCE, || listed(&url) == ["n7"]);
    drop(c);
    assert!(listed(&url).is_empty(), "drop deregisters too");
}

#[test]
fn resolve_finds_a_node_by_name_and_lists_the_known_ones_otherwise() {
    let addr = free_addr();
    let url = format!("http://{addr}/");
    let _discovery = spawn_discovery(addr);
    let (_c2, _) = client(&url, 2);
    let (_c3, _) = client(&url, 3);
    wait_until("both to register", PATIENCE, || {
        listed(&url) == ["n2", "n3"]
    });

    assert_eq!(
        resolve(&url, "n3", &Credentials::default()),
        Ok(info(3).http)
    );
    let err = resolve(&url, "n9", &Credentials::default()).expect_err("n9 is not registered");
    assert_eq!(
        err,
        DiscoveryError::UnknownNode {
            name: "n9".into(),
            known: vec!["n2".into(), "n3".into()]
        }
    );
    assert!(err.to_string().contains("known nodes: n2, n3"), "{err}");
}

#[test]
fn lookups_against_a_dead_discovery_fail_clearly_and_quickly() {
    let url = format!("http://{}", free_addr());
    let err = resolve(&url, "n1", &Credentials::default()).expect_err("nothing listens there");
    assert!(
        matches!(err, DiscoveryError::Http(HttpError::Unreachable { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("cannot reach the discovery server"),
        "{err}"
    );
}

/// Collects the log lines that mention a given text (the tests share one logger).
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn lines_about(url: &str) -> Vec<String> {
    let lines = CAPTURE.0.lock().unwrap();
    lines.iter().filter(|l| l.contains(url)).cloned().collect()
}

#[test]
fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    log::set_logger(&CAPTURE).expect("only this test installs a logger");
    log::set_max_level(log::LevelFilter::Info);
    let addr = free_addr();
    let url = format!("http://{addr}");
    let mut discovery = spawn_discovery(addr);
    let (_c, delivered) = client(&url, 4);
    wait_until("a first list", PATIENCE, || {
        !delivered.lock().unwrap().is_empty()
    });

    discovery.kill();
    // Several ticks fail while discovery is down; only the first may say so.
    std::thread::sleep(INTERVAL * 4);
    let down: Vec<_> = lines_about(&url)
        .into_iter()
        .filter(|l| l.contains("cannot reach"))
        .collect();
    assert_eq!(down.len(), 1, "{down:#?}");
    assert!(down[0].starts_with("WARN"), "{down:?}");

    let _discovery = spawn_discovery(addr);
    wait_until("the client to log the way back", PATIENCE, || {
        lines_about(&url)
            .iter()
            .any(|l| l.contains("reachable again"))
    });
    let seen = delivered.lock().unwrap().len();
    wait_until("two more lists", PATIENCE, || {
        delivered.lock().unwrap().len() >= seen + 2
    });
    let about = lines_about(&url);
    assert_eq!(
        about
            .iter()
            .filter(|l| l.contains("reachable again"))
            .count(),
        1,
        "{about:#?}"
    );
    assert_eq!(
        about.iter().filter(|l| l.contains("cannot reach")).count(),
        1,
        "{about:#?}"
    );
}

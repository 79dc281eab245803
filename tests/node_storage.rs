//! The node started from code with its own `Storage`: a batch is committed before it is
//! applied, and when the storage fails every request of the batch gets 503 and nothing
//! is applied, read or gossiped.

mod common;

use common::{free_addr, http_get, http_post};
use gctr::crdt::{Origin, OriginDelta, State};
use gctr::node::{Node, NodeConfig};
use gctr::node_core::{fresh_incarnation, Storage};
use gctr::status::StorageStatus;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Records every committed delta; fails commits while `failing` is set.
struct TestStorage {
    failing: Arc<AtomicBool>,
    committed: Arc<Mutex<Vec<OriginDelta>>>,
}

impl Storage for TestStorage {
    fn commit_local(&mut self, delta: &OriginDelta) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::other("disk on fire"));
        }
        self.committed.lock().unwrap().push(delta.clone());
        Ok(())
    }

    fn log_learned(&mut self, _deltas: &[OriginDelta]) -> io::Result<()> {
        Ok(())
    }

    fn after_turn(&mut self, _state: &State) -> io::Result<()> {
        Ok(())
    }

    fn renew_incarnation(&mut self, current: &Origin, _reason: String) -> io::Result<Origin> {
        Ok(fresh_incarnation(current))
    }

    fn status(&self) -> StorageStatus {
        StorageStatus::MEMORY
    }

    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_storage_failure_answers_503_and_applies_nothing() {
    let failing = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(Mutex::new(Vec::new()));
    let storage = TestStorage {
        failing: failing.clone(),
        committed: committed.clone(),
    };
    let config = NodeConfig::new(free_addr(), "127.0.0.1:0".parse().unwrap());
    let node = Node::start(config, Box::new(storage), Origin::new("t", 1), State::new()).unwrap();
    let http = node.http_addr().to_string();

    let (s, _) = http_post(&http, "/counters/c/increment?by=2", "").unwrap();
    assert_eq!(s, 200);
    {
        let log = committed.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].entries[0].counter.as_str(), log[0].entries[0].p),
            ("c", 2)
        );
    }

    failing.store(true, Ordering::SeqCst);
    let (s, body) = http_post(&http, "/counters/c/increment?by=5", "").unwrap();
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("disk on fire"), "{body}");
    let (_, body) = http_get(&http, "/counters/c").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["value"], 2);

    failing.store(false, Ordering::SeqCst);
    let (s, body) = http_post(&http, "/counters/c/increment?by=1", "").unwrap();
    assert_eq!((s, body.contains("\"value\":3")), (200, true), "{body}");
    let (_, body) = http_get(&http, "/status").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["requests"]["storage_failures"], 1);
    assert_eq!(v["storage"]["kind"], "memory");
    node.stop();
}

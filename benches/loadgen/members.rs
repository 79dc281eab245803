//! Membership timings: how long until every node listed sees one member in one state
//! (`dead` after a crash, `alive` after a join), polled on each node's `GET /members`
//! every few milliseconds. The time counts from the command's start, which the script
//! launches right after the event it times.

use crate::http::HttpConn;
use crate::Error;
use std::time::{Duration, Instant};

/// Polls until every node reports `member` in `state`; prints `RESULT ms=...`.
pub fn wait_member(
    nodes: &[String],
    member: &str,
    state: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let start = Instant::now();
    let mut conns = nodes
        .iter()
        .map(|n| HttpConn::connect(n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut done = vec![false; conns.len()];
    while !done.iter().all(|d| *d) {
        for (conn, done) in conns.iter_mut().zip(done.iter_mut()).filter(|(_, d)| !**d) {
            let body = conn.expect_ok("GET", "/members")?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            *done = v["members"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["name"] == member && m["state"] == state)
            });
        }
        if start.elapsed() > timeout {
            return Err(format!("{member} not {state} everywhere within {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "RESULT ms={:.0} member={member} state={state}",
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

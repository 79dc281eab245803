//! Idle gossip cost: writes `counters` counters once each (on random nodes), waits until
//! every node holds all of them, lets in-flight pushes settle, then reads each node's
//! gossip byte counters from `GET /status` twice, `window` apart. Only frame bytes are
//! counted (the node's own figures), not TCP/IP or UDP headers. Membership's share (its
//! probes, gossip and digest checks, type `member`) is reported apart as well.

use crate::http::HttpConn;
use std::io;
use std::thread::sleep;
use std::time::{Duration, Instant};

pub struct Settings {
    pub nodes: Vec<String>,
    pub counters: usize,
    pub window: Duration,
    pub timeout: Duration,
}

pub fn run(settings: &Settings) -> io::Result<()> {
    let mut conns = settings
        .nodes
        .iter()
        .map(|n| HttpConn::connect(n))
        .collect::<io::Result<Vec<_>>>()?;
    let prefix = format!("idle-{:08x}-", fastrand::u32(..));
    for i in 0..settings.counters {
        let node = fastrand::usize(..conns.len());
        conns[node].expect_ok("POST", &format!("/counters/{prefix}{i}/increment"))?;
    }
    let deadline = Instant::now() + settings.timeout;
    while !conns
        .iter_mut()
        .map(|c| holds_all(c, &prefix, settings.counters))
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .all(|ok| ok)
    {
        if Instant::now() > deadline {
            return Err(io::Error::other(
                "the idle cluster did not converge in time",
            ));
        }
        sleep(Duration::from_millis(20));
    }
    sleep(Duration::from_secs(1));
    let before = conns
        .iter_mut()
        .map(gossip_bytes)
        .collect::<io::Result<Vec<_>>>()?;
    let start = Instant::now();
    sleep(settings.window);
    let after = conns
        .iter_mut()
        .map(gossip_bytes)
        .collect::<io::Result<Vec<_>>>()?;
    let secs = start.elapsed().as_secs_f64();
    let rate = |a: u64, b: u64| (a - b) as f64 / secs;
    let rates: Vec<(f64, f64, f64)> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (rate(a.0, b.0), rate(a.1, b.1), rate(a.2, b.2)))
        .collect();
    for (node, (out, inb, member)) in settings.nodes.iter().zip(&rates) {
        println!("{node}: {out:.0} B/s out ({member:.0} of them membership), {inb:.0} B/s in");
    }
    let n = rates.len() as f64;
    let out_mean = rates.iter().map(|r| r.0).sum::<f64>() / n;
    let out_max = rates.iter().map(|r| r.0).fold(0.0, f64::max);
    let in_mean = rates.iter().map(|r| r.1).sum::<f64>() / n;
    let member_mean = rates.iter().map(|r| r.2).sum::<f64>() / n;
    println!(
        "RESULT nodes={} counters={} out_mean_bps={out_mean:.0} out_max_bps={out_max:.0} in_mean_bps={in_mean:.0} member_out_mean_bps={member_mean:.0}",
        settings.nodes.len(),
        settings.counters
    );
    Ok(())
}

fn holds_all(conn: &mut HttpConn, prefix: &str, count: usize) -> io::Result<bool> {
    let body = conn.expect_ok("GET", "/counters")?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
    let held = v
        .get("counters")
        .and_then(serde_json::Value::as_object)
        .map_or(0, |m| {
            m.iter()
                .filter(|(k, v)| k.starts_with(prefix) && v.as_i64() == Some(1))
                .count()
        });
    Ok(held == count)
}

/// Total gossip bytes (out, in) over every frame type, and membership's bytes out, from
/// `GET /status`.
fn gossip_bytes(conn: &mut HttpConn) -> io::Result<(u64, u64, u64)> {
    let body = conn.expect_ok("GET", "/status")?;
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
    let sum = |field: &str| -> io::Result<u64> {
        v.pointer(&format!("/gossip/{field}"))
            .and_then(serde_json::Value::as_object)
            .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
            .ok_or_else(|| io::Error::other(format!("GET /status has no gossip.{field}")))
    };
    let member = v
        .pointer("/gossip/bytes_out/member")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok((sum("bytes_out")?, sum("bytes_in")?, member))
}

//! A dashboard left open, as load: `GET /dashboard.json` on its own keep-alive
//! connection at a fixed interval, as the dashboard page polls its own node, so a
//! throughput run can be measured with and without it.

use crate::http::HttpConn;
use std::io;
use std::time::{Duration, Instant};

/// Polls `http`'s dashboard JSON every `every` until `end`; returns the polls made.
pub fn poll_until(http: &str, every: Duration, end: Instant) -> io::Result<u64> {
    let mut conn = HttpConn::connect(http)?;
    let mut polls = 0;
    let mut next = Instant::now();
    while next < end {
        conn.expect_ok("GET", "/dashboard.json")?;
        polls += 1;
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(polls)
}

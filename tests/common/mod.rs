//! Shared helpers for the integration tests that run the real `gctr` binary: free ports,
//! child processes that are killed when their guard drops (so a failing test leaves
//! nothing running), polling with a deadline, and small HTTP calls.
#![allow(dead_code)]

pub mod cluster;
pub mod keys;
pub mod redis;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn gctr_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gctr")
}

/// A loopback address with a port that was free a moment ago (bound, then released)
/// for a process the test starts to bind. The port is below the kernel's ephemeral
/// range, so no outgoing connection (another node's, this test's) can take it in the
/// meantime, and never handed out before by this test binary, so two nodes of one test
/// never get the same one. Where the ephemeral range leaves no room below it, the
/// kernel picks (port 0).
pub fn free_addr() -> SocketAddr {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const LOWEST: u16 = 10_000;
    let below = ephemeral_ports_start();
    if below > LOWEST + 1_000 {
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..1_000 {
            let port = fastrand::u16(LOWEST..below);
            if given.contains(&port) {
                continue;
            }
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                given.insert(port);
                return listener.local_addr().expect("local addr");
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// The first port of the kernel's ephemeral range (Linux's default if it cannot be read).
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A spawned process, killed and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `gctr` with `args`; stderr goes to `log` when given, else is discarded.
    pub fn spawn(name: &str, args: &[&str], log: Option<&Path>) -> Proc {
        let mut cmd = Command::new(gctr_bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
        match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("create log file");
                cmd.stderr(file);
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        let child = cmd.spawn().expect("spawn gctr");
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit; returns the exit status code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `gctr` with `args`, stderr to `log`, and reads the first line it prints on
/// stdout, split into words (none if it exits first). The rest of its stdout is drained
/// by a thread of its own, so the process can always write there.
pub fn spawn_reading_first_line(name: &str, args: &[&str], log: &Path) -> (Proc, Vec<String>) {
    let file = std::fs::File::create(log).expect("create log file");
    let child = Command::new(gctr_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .expect("spawn gctr");
    let mut proc = Proc {
        child,
        name: name.to_owned(),
    };
    let mut stdout = std::io::BufReader::new(proc.child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let words = line.split_whitespace().map(str::to_owned).collect();
    (proc, words)
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; panics with `what` then.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A short-timeout HTTP agent for tests.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build()
}

/// GET `http://addr/path`; returns status and body, whatever the status.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    respond(agent().get(&format!("http://{addr}{path}")).call())
}

/// POST `http://addr/path` with `body`; returns status and body, whatever the status.
pub fn http_post(addr: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    respond(
        agent()
            .post(&format!("http://{addr}{path}"))
            .set("Content-Type", "application/json")
            .send_string(body),
    )
}

/// GET `http://addr/path` and parse the body of a 200 answer as JSON; `None` for any
/// other status, an unreachable node or a body that is not JSON.
pub fn get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    match http_get(addr, path) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn respond(r: Result<ureq::Response, ureq::Error>) -> Result<(u16, String), String> {
    match r {
        Ok(resp) => {
            let status = resp.status();
            Ok((status, resp.into_string().map_err(|e| e.to_string())?))
        }
        Err(ureq::Error::Status(status, resp)) => {
            Ok((status, resp.into_string().map_err(|e| e.to_string())?))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A finished command's stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A finished command's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `gctr args…` to completion.
pub fn run_gctr(args: &[&str]) -> Output {
    Command::new(gctr_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gctr")
}

/// `v` as the wire format's LEB128 varint, for hand-made frames.
pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

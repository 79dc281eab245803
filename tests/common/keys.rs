//! Helpers for the keyring tests: keyring files, keyed nodes, the keyring's figures
//! and listing, and a proxy that records or replays what a node sends through it.

use super::cluster::{start_node, TestNode};
use super::get_json;
use gctr::keyring::Key;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writes a keyring file holding `keys` (the first is the primary) for node `name`.
pub fn keyring_file(dir: &Path, name: &str, keys: &[&Key]) -> PathBuf {
    let path = dir.join(format!("{name}.keyring"));
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", k.to_base64()))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts a node with its own copy of a keyring holding `keys`.
pub fn keyed_node(
    dir: &Path,
    name: &str,
    addrs: (&str, &str),
    seeds: &[&str],
    keys: &[&Key],
    extra: &[&str],
) -> TestNode {
    let file = keyring_file(dir, name, keys);
    let mut args = vec!["--keyring", file.to_str().unwrap()];
    args.extend(extra);
    start_node(dir, name, addrs, seeds, &args)
}

/// How many refusals of this lane and reason the node counted.
pub fn rejections(node: &TestNode, lane: &str, reason: &str) -> u64 {
    let status = get_json(&node.http, "/status").expect("status");
    status["keyring"]["rejections"]
        .as_array()
        .expect("keyring rejections")
        .iter()
        .find(|r| r["lane"] == lane && r["reason"] == reason)
        .and_then(|r| r["count"].as_u64())
        .unwrap_or_else(|| panic!("no {lane} {reason} figure"))
}

/// The node's `GET /keys`.
pub fn keys_view(node: &TestNode) -> serde_json::Value {
    get_json(&node.http, "/keys").expect("GET /keys")
}

/// `(id, held by, sealing with)` for every key the node lists, in its order.
pub fn key_holders(view: &serde_json::Value) -> Vec<(String, u64, u64)> {
    view["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["members"].as_u64().unwrap(),
                k["primary_members"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// What a proxy does with the bytes a client sends through it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward and keep a copy of the first connection's bytes.
    Record,
    /// Forward, sending the first sealed frame after the keyed hello twice.
    DuplicateFirstFrame,
}

/// A TCP proxy in front of a node's gossip port, for the replay tests.
pub struct Proxy {
    pub addr: String,
    recorded: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    pub fn start(target: &str, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (target, rec) = (target.to_owned(), recorded.clone());
        std::thread::spawn(move || {
            let mut first = true;
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (rec, record) = (rec.clone(), first && mode == ProxyMode::Record);
                let duplicate = first && mode == ProxyMode::DuplicateFirstFrame;
                first = false;
                std::thread::spawn(move || forward(client, server, rec, record, duplicate));
            }
        });
        Proxy { addr, recorded }
    }

    /// What the first connection carried so far.
    pub fn recorded(&self) -> Vec<u8> {
        self.recorded.lock().unwrap().clone()
    }
}

fn forward(
    mut client: TcpStream,
    mut server: TcpStream,
    recorded: Arc<Mutex<Vec<u8>>>,
    record: bool,
    duplicate: bool,
) {
    let (mut back_from, mut back_to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
    });
    if duplicate {
        // The keyed hello (head, 4 bytes a key id, 16 random), then one sealed frame.
        let mut head = [0u8; 6];
        if client.read_exact(&mut head).is_err() {
            return;
        }
        let mut rest = vec![0u8; 4 * usize::from(head[5]) + 16];
        if client.read_exact(&mut rest).is_err()
            || server.write_all(&[&head[..], &rest].concat()).is_err()
        {
            return;
        }
        let mut header = [0u8; 10];
        if client.read_exact(&mut header).is_err() {
            return;
        }
        let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
        let mut body = vec![0u8; len];
        if client.read_exact(&mut body).is_err() {
            return;
        }
        let frame = [&header[..], &body].concat();
        let _ = server.write_all(&[&frame[..], &frame].concat());
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if record {
                    recorded.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                if server.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A UDP relay in front of a node's probe lane: forwards every datagram, and sends the
/// first one `replays` more times.
pub struct UdpRelay {
    pub addr: String,
}

impl UdpRelay {
    pub fn start(target: &str, replays: usize) -> UdpRelay {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let out = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let target = target.to_owned();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut first = true;
            loop {
                let Ok((n, _)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let copies = if first { 1 + replays } else { 1 };
                first = false;
                for _ in 0..copies {
                    let _ = out.send_to(&buf[..n], &target);
                }
            }
        });
        UdpRelay { addr }
    }
}

//! Helpers for tests that drive `gctr node --redis` with real Redis clients: start a node
//! on port 0 everywhere and read its addresses from its start-up line, run `redis-cli`,
//! `redis-benchmark` and the Python `redis` package, and a minimal RESP client for
//! exact bookkeeping. `scripts/test.sh` installs the clients when they are missing.

use super::Proc;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A node started with `--redis`, and the addresses it printed.
pub struct RedisNode {
    pub proc: Proc,
    pub name: String,
    pub gossip: String,
    pub http: String,
    pub redis: String,
}

impl RedisNode {
    pub fn port(&self) -> String {
        self.redis.rsplit_once(':').expect("host:port").1.to_owned()
    }
}

/// Starts `gctr node --addr/--http/--redis 127.0.0.1:0` (plus `extra`) and reads the
/// line `gctr node NAME gossip ADDR http ADDR redis ADDR`. Its log goes to
/// `log_dir/NAME.log`.
pub fn start_redis_node(log_dir: &Path, name: &str, seeds: &[&str], extra: &[&str]) -> RedisNode {
    let any = "127.0.0.1:0";
    let extra = [&["--redis", any][..], extra].concat();
    let args = super::cluster::node_args(name, (any, any), seeds, &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log_path = log_dir.join(format!("{name}.log"));
    let (mut proc, words) = super::spawn_reading_first_line(name, &args, &log_path);
    if words.len() != 9 || words[..2] != ["gctr", "node"] {
        proc.kill();
        panic!(
            "{name} did not start: stdout {words:?}, log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    assert_eq!(
        (
            words[2].as_str(),
            words[3].as_str(),
            words[5].as_str(),
            words[7].as_str()
        ),
        (name, "gossip", "http", "redis"),
        "{words:?}"
    );
    RedisNode {
        proc,
        name: name.to_owned(),
        gossip: words[4].clone(),
        http: words[6].clone(),
        redis: words[8].clone(),
    }
}

/// Panics with how to get `tool` when it is not installed.
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: scripts/test.sh installs it (apt-get install redis-tools)"
    );
}

/// `redis-cli -h 127.0.0.1 -p PORT args...` (raw output, as when not on a terminal).
pub fn redis_cli(node: &RedisNode, args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &node.port()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli")
}

/// `redis-cli` with `input` on stdin: one command per line, sent one after another.
pub fn redis_cli_stdin(node: &RedisNode, input: &str) -> Output {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &node.port()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed redis-cli");
    child.wait_with_output().expect("redis-cli output")
}

/// Checks that the Python `redis` package imports.
pub fn need_python_redis() {
    let ok = Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the Python redis package is missing: scripts/test.sh installs it (python3-redis or pip install redis)"
    );
}

/// A minimal RESP client for tests that must know exactly what was answered.
pub struct RespClient {
    reader: BufReader<TcpStream>,
    line: String,
}

impl RespClient {
    pub fn connect(addr: &str) -> std::io::Result<RespClient> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        Ok(RespClient {
            reader: BufReader::new(stream),
            line: String::new(),
        })
    }

    /// Sends `commands` (each a list of words) in one write.
    pub fn send(&mut self, commands: &[Vec<String>]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for words in commands {
            bytes.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
            for w in words {
                bytes.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
            }
        }
        self.reader.get_mut().write_all(&bytes)
    }

    /// Reads one reply that is an integer, a simple string or an error, as its line
    /// (`:5`, `+OK`, `-ERR ...`); a bulk string is returned as `$` and its contents.
    pub fn read_reply(&mut self) -> std::io::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let line = self.line.trim_end().to_owned();
        if let Some(len) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            let mut data = vec![0; len + 2];
            self.reader.read_exact(&mut data)?;
            data.truncate(len);
            return Ok(format!("${}", String::from_utf8_lossy(&data)));
        }
        Ok(line)
    }
}

/// `words` as an owned command.
pub fn cmd(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

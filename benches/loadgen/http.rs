//! A minimal keep-alive HTTP/1.1 client over one `std::net::TcpStream`: writes a request
//! with no body, reads the status line, the headers and exactly `Content-Length` bytes
//! of body. It is all a load generator needs against the node's API, and it costs far
//! less per request than a general client, so the figures measure the server. With
//! `GCTR_TOKEN` set, every request carries it as a bearer token (a node started with
//! `--api-token-file`); with `GCTR_CA` set to a PEM CA file, connections are TLS (rustls)
//! trusting only that CA (a node started with `--tls-cert`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response body accepted; anything bigger is taken as a broken server.
const MAX_BODY: usize = 64 << 20;
/// Longest status or header line accepted.
const MAX_LINE: usize = 16 << 10;
/// A server that stalls this long fails the request instead of hanging the benchmark.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection unused this long is replaced before its next request: the node closes
/// keep-alive connections idle for its `--http-read-timeout` (15 s by default), and a
/// request written into a connection the server is closing would fail.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// One keep-alive connection to one server.
pub struct HttpConn {
    addr: String,
    reader: BufReader<Box<dyn Stream>>,
    request: Vec<u8>,
    line: String,
    /// The server said `Connection: close`: the next request opens a new connection.
    closed: bool,
    /// The `Authorization` header line sent with every request, or "".
    authorization: String,
    last_used: Instant,
}

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpConn {
    /// Opens a connection and waits for one `GET /health` on it before returning, so a
    /// measurement starts only on connections the server already serves (tiny_http gives
    /// each one a thread; before the TaskPool patch in vendor/tiny_http, connections
    /// opened together could wait unanswered until another one closed).
    pub fn connect(addr: &str) -> io::Result<HttpConn> {
        let mut conn = HttpConn {
            addr: addr.to_owned(),
            reader: BufReader::new(open(addr).map_err(|e| context(e, "connect to", addr))?),
            request: Vec::with_capacity(256),
            line: String::with_capacity(256),
            closed: false,
            last_used: Instant::now(),
            authorization: std::env::var("GCTR_TOKEN")
                .map(|t| format!("Authorization: Bearer {t}\r\n"))
                .unwrap_or_default(),
        };
        conn.expect_ok("GET", "/health")?;
        if conn.closed {
            return Err(broken(format!("{addr} does not keep connections alive")));
        }
        Ok(conn)
    }

    /// Sends `METHOD path` with an empty body and `headers` (whole lines, each ending in
    /// "\r\n", or "") and reads the whole response.
    pub fn request(&mut self, method: &str, path: &str, headers: &str) -> io::Result<Response> {
        if self.closed || self.last_used.elapsed() > MAX_IDLE {
            *self = HttpConn::connect(&self.addr)?;
        }
        self.last_used = Instant::now();
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{}{headers}Content-Length: 0\r\n\r\n",
            self.addr, self.authorization
        )?;
        self.reader
            .get_mut()
            .write_all(&self.request)
            .and_then(|()| self.read_response())
            .map_err(|e| context(e, &format!("{method} {path} on"), &self.addr))
    }

    /// [`HttpConn::expect_ok_with`] with no extra header.
    pub fn expect_ok(&mut self, method: &str, path: &str) -> io::Result<Vec<u8>> {
        self.expect_ok_with(method, path, "")
    }

    /// Like [`HttpConn::request`], but anything other than 200 is an error.
    pub fn expect_ok_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
    ) -> io::Result<Vec<u8>> {
        let response = self.request(method, path, headers)?;
        if response.status != 200 {
            return Err(io::Error::other(format!(
                "{method} {path} on {}: status {}: {}",
                self.addr,
                response.status,
                String::from_utf8_lossy(&response.body)
            )));
        }
        Ok(response.body)
    }

    fn read_response(&mut self) -> io::Result<Response> {
        self.read_line()?;
        let status = parse_status(&self.line)?;
        let mut length = None;
        loop {
            self.read_line()?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(broken(format!("header without a colon: {header:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n: usize = value
                    .parse()
                    .map_err(|_| broken(format!("bad Content-Length {value:?}")))?;
                if n > MAX_BODY {
                    return Err(broken(format!("Content-Length {n} is over {MAX_BODY}")));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(broken(format!(
                    "Transfer-Encoding {value:?} is not supported"
                )));
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                self.closed = true;
            }
        }
        let length = length.ok_or_else(|| broken("response without Content-Length".into()))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Response { status, body })
    }

    fn read_line(&mut self) -> io::Result<()> {
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64)
            .read_line(&mut self.line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} closed the connection", self.addr),
            ));
        }
        if !self.line.ends_with('\n') {
            return Err(broken("status or header line too long".into()));
        }
        Ok(())
    }
}

/// A connection, plain or TLS.
trait Stream: Read + Write + Send {}

impl<T: Read + Write + Send> Stream for T {}

fn open(addr: &str) -> io::Result<Box<dyn Stream>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(config) = tls_config()? else {
        return Ok(Box::new(stream));
    };
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| broken(format!("{host}: {e}")))?;
    let tls = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    Ok(Box::new(rustls::StreamOwned::new(tls, stream)))
}

/// The TLS client configuration `GCTR_CA` asks for, if it is set.
fn tls_config() -> io::Result<Option<Arc<rustls::ClientConfig>>> {
    match std::env::var_os("GCTR_CA") {
        None => Ok(None),
        Some(ca) => gctr::http::tls::client_trusting(std::path::Path::new(&ca))
            .map(Some)
            .map_err(broken),
    }
}

fn parse_status(line: &str) -> io::Result<u16> {
    let mut parts = line.split_ascii_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(status))) if v.starts_with("HTTP/1.") => Ok(status),
        _ => Err(broken(format!("bad status line {:?}", line.trim_end()))),
    }
}

fn context(e: io::Error, what: &str, addr: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {addr}: {e}"))
}

fn broken(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Fresh idempotency keys: `prefix-N` for N = 0, 1, 2, ... A prefix unique to the run
/// (and to the connection, where several share one counter) makes every key new to the
/// node, so each keyed request is a first acceptance, never a retry.
pub struct Keys {
    prefix: String,
    next: u64,
    header: String,
}

impl Keys {
    pub fn new(prefix: String) -> Keys {
        Keys {
            prefix,
            next: 0,
            header: String::with_capacity(64),
        }
    }

    /// The `Idempotency-Key` header line of the next key.
    pub fn next_header(&mut self) -> &str {
        use std::fmt::Write as _;
        self.header.clear();
        let _ = write!(
            self.header,
            "Idempotency-Key: {}-{}\r\n",
            self.prefix, self.next
        );
        self.next += 1;
        &self.header
    }
}

/// The `value` field of a JSON body such as `GET /counters/{name}`'s.
pub fn json_value(body: &[u8]) -> io::Result<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| broken(e.to_string()))?;
    v.get("value")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| broken(format!("no value in {}", String::from_utf8_lossy(body))))
}

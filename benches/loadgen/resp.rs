//! `INCR key` over the Redis protocol (RESP) on one keep-alive connection, so Redis is
//! driven by the same client loop, threads and timing as gctr.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RespConn {
    reader: BufReader<TcpStream>,
    command: Vec<u8>,
    line: String,
}

impl RespConn {
    pub fn connect(addr: &str, key: &str) -> io::Result<RespConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut command = Vec::new();
        write!(command, "*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len())?;
        Ok(RespConn {
            reader: BufReader::new(stream),
            command,
            line: String::new(),
        })
    }

    /// One `INCR`; returns the new value.
    pub fn incr(&mut self) -> io::Result<i64> {
        self.reader.get_mut().write_all(&self.command)?;
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "redis closed the connection",
            ));
        }
        let reply = self.line.trim_end();
        match reply.strip_prefix(':').map(str::parse::<i64>) {
            Some(Ok(n)) => Ok(n),
            _ => Err(io::Error::other(format!("redis answered {reply:?}"))),
        }
    }
}

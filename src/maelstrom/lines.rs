//! Reading input line by line without trusting a line's length: a line longer than the
//! limit is skipped up to its newline instead of growing a buffer without end.

use std::io::{self, BufRead};

/// What one call to [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its newline (a last line without one counts too).
    Text(Vec<u8>),
    /// A line of more than the limit, skipped; how many bytes it had.
    TooLong(usize),
    Eof,
}

/// Reads the next line of at most `max` bytes.
pub fn read_line(input: &mut impl BufRead, max: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut len = 0usize;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match len {
                0 => Line::Eof,
                n if n > max => Line::TooLong(n),
                _ => Line::Text(line),
            });
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (&buf[..at], true),
            None => (buf, false),
        };
        len += chunk.len();
        if len <= max {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let used = chunk.len() + usize::from(found);
        input.consume(used);
        if found {
            return Ok(if len > max {
                Line::TooLong(len)
            } else {
                Line::Text(line)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_skips_the_overlong_one() {
        let data = b"ab\n0123456789\n\ncd".to_vec();
        let mut input = io::BufReader::with_capacity(4, &data[..]);
        let mut got = Vec::new();
        loop {
            match read_line(&mut input, 5).unwrap() {
                Line::Eof => break,
                other => got.push(other),
            }
        }
        assert_eq!(
            got,
            vec![
                Line::Text(b"ab".to_vec()),
                Line::TooLong(10),
                Line::Text(Vec::new()),
                Line::Text(b"cd".to_vec()),
            ]
        );
    }
}

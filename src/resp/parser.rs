//! Where bytes from a Redis client become commands: an incremental RESP2 request parser.
//!
//! A request is either a multibulk array (`*2\r\n$4\r\nINCR\r\n$1\r\na\r\n`, what every
//! client library sends) or an inline command (`INCR a\r\n`, what a person types into
//! telnet). [`parse`] looks at the bytes buffered so far and either finds one whole
//! request at the front, says more bytes are needed, or reports a protocol error, after
//! which the connection must be closed (the stream can no longer be framed).
//!
//! Nothing is copied or allocated: a request is a list of byte ranges into the buffer.
//! Every count and length a client declares is checked against [`Limits`] before it is
//! used, and is only ever used to decide how many bytes to wait for, never to size an
//! allocation. A partial request is parsed again from its start when more bytes arrive;
//! only headers are scanned, so that costs O(arguments), not O(bytes).

use std::fmt;
use std::ops::Range;

/// Longest `*N` or `$N` header line, digits and sign, before its CRLF.
const MAX_HEADER_DIGITS: usize = 20;

/// Caps on what one request may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most arguments (command name included) in one request.
    pub max_args: usize,
    /// Longest single argument, in bytes.
    pub max_bulk: usize,
    /// Longest inline request line, in bytes.
    pub max_inline: usize,
}

/// The defaults of the node's RESP server.
pub const DEFAULT_LIMITS: Limits = Limits {
    max_args: 4096,
    max_bulk: 64 * 1024,
    max_inline: 64 * 1024,
};

/// Bytes that cannot be a RESP2 request; the connection is answered this error, then closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A `*` count that is not a number or is over [`Limits::max_args`].
    MultibulkLength,
    /// A `$` length that is not a number, is negative or is over [`Limits::max_bulk`].
    BulkLength,
    /// A header line with no CRLF within [`MAX_HEADER_DIGITS`] bytes.
    HeaderTooLong,
    /// An array element that does not start with `$`.
    ExpectedBulk(u8),
    /// Bulk data not followed by CRLF.
    ExpectedCrlf,
    /// An inline line over [`Limits::max_inline`] bytes, or with too many words.
    InlineTooBig,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            ProtocolError::MultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::BulkLength => f.write_str("invalid bulk length"),
            ProtocolError::HeaderTooLong => f.write_str("too big count string"),
            ProtocolError::ExpectedBulk(b) if b.is_ascii_graphic() => {
                write!(f, "expected '$', got '{}'", *b as char)
            }
            ProtocolError::ExpectedBulk(b) => write!(f, "expected '$', got byte {b}"),
            ProtocolError::ExpectedCrlf => f.write_str("expected CRLF after bulk data"),
            ProtocolError::InlineTooBig => f.write_str("too big inline request"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Looks for one whole request at the front of `buf`. On `Ok(Some(n))` the request took
/// the first `n` bytes and `args` holds the range of each of its arguments (none for an
/// empty request, which the caller skips); on `Ok(None)` more bytes are needed and
/// `args` is meaningless. `args` is cleared first, and reused so that parsing does not
/// allocate once it has grown.
pub fn parse(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, args),
        Some(_) => parse_inline(buf, limits, args),
    }
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, ProtocolError> {
    let Some((count, mut pos)) = header(buf, 0)? else {
        return Ok(None);
    };
    // `*0` and `*-1` are empty requests, skipped as Redis does.
    if count <= 0 {
        return Ok(Some(pos));
    }
    if count as u64 > limits.max_args as u64 {
        return Err(ProtocolError::MultibulkLength);
    }
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
        }
        let Some((len, data)) = header(buf, pos).map_err(|e| match e {
            ProtocolError::MultibulkLength => ProtocolError::BulkLength,
            other => other,
        })?
        else {
            return Ok(None);
        };
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(ProtocolError::BulkLength);
        }
        let end = data + len as usize;
        let Some(crlf) = buf.get(end..end + 2) else {
            return Ok(None);
        };
        if crlf != b"\r\n" {
            return Err(ProtocolError::ExpectedCrlf);
        }
        args.push(data..end);
        pos = end + 2;
    }
    Ok(Some(pos))
}

/// The number on the header line starting at `start` (one type byte, then digits, then
/// CRLF) and where the line ends; `None` when the line is not complete yet. A bad
/// number is reported as [`ProtocolError::MultibulkLength`]; the caller renames it for
/// a bulk header.
fn header(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    let digits_start = start + 1;
    let window_end = buf.len().min(digits_start + MAX_HEADER_DIGITS + 2);
    let window = &buf[digits_start.min(window_end)..window_end];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if window.len() >= MAX_HEADER_DIGITS + 2 {
            Err(ProtocolError::HeaderTooLong)
        } else {
            Ok(None)
        };
    };
    let Some(&lf) = window.get(cr + 1) else {
        return Ok(None);
    };
    if lf != b'\n' {
        return Err(ProtocolError::MultibulkLength);
    }
    let number = parse_i64(&window[..cr]).ok_or(ProtocolError::MultibulkLength)?;
    Ok(Some((number, digits_start + cr + 2)))
}

/// A decimal i64 written the way Redis writes one: an optional `-`, then digits only.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// One line of words separated by spaces or tabs, ended by LF (a CR before it is
/// dropped). Quotes are not interpreted: a word is everything between separators.
fn parse_inline(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[..buf.len().min(limits.max_inline + 1)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if window.len() > limits.max_inline {
            Err(ProtocolError::InlineTooBig)
        } else {
            Ok(None)
        };
    };
    let line_end = if lf > 0 && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    let mut word_start = None;
    for (i, &b) in buf[..line_end].iter().enumerate() {
        let separator = b == b' ' || b == b'\t';
        match (separator, word_start) {
            (false, None) => word_start = Some(i),
            (true, Some(start)) => {
                push_word(args, start..i, limits)?;
                word_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = word_start {
        push_word(args, start..line_end, limits)?;
    }
    Ok(Some(lf + 1))
}

fn push_word(
    args: &mut Vec<Range<usize>>,
    word: Range<usize>,
    limits: &Limits,
) -> Result<(), ProtocolError> {
    if args.len() >= limits.max_args {
        return Err(ProtocolError::InlineTooBig);
    }
    args.push(word);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request in `input`, as byte strings; panics on an error or a partial tail.
    fn all(input: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut args = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let n = parse(&input[pos..], &DEFAULT_LIMITS, &mut args)
                .unwrap()
                .expect("whole request");
            out.push(
                args.iter()
                    .map(|r| input[pos..][r.clone()].to_vec())
                    .collect(),
            );
            pos += n;
        }
        out
    }

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_and_inline_requests() {
        let input = b"*2\r\n$4\r\nINCR\r\n$1\r\na\r\nincrby  b\t5\r\nPING\n*1\r\n$0\r\n\r\n";
        assert_eq!(
            all(input),
            vec![
                words(&["INCR", "a"]),
                words(&["incrby", "b", "5"]),
                words(&["PING"]),
                words(&[""]),
            ]
        );
    }

    #[test]
    fn empty_requests_are_skipped_not_errors() {
        assert_eq!(
            all(b"*0\r\n*-1\r\n\r\n  \r\n"),
            vec![Vec::<Vec<u8>>::new(); 4]
        );
    }

    #[test]
    fn binary_bulk_data_may_hold_crlf() {
        assert_eq!(
            all(b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n"),
            vec![vec![b"ECHO".to_vec(), b"a\r\nb".to_vec()]]
        );
    }

    #[test]
    fn every_strict_prefix_is_incomplete_and_any_split_gives_the_same_requests() {
        let input: &[u8] = b"*3\r\n$6\r\nINCRBY\r\n$3\r\nkey\r\n$2\r\n-7\r\nGET key\r\n";
        let first_len = 33;
        let mut args = Vec::new();
        for cut in 0..first_len {
            assert_eq!(
                parse(&input[..cut], &DEFAULT_LIMITS, &mut args),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
        assert_eq!(
            parse(input, &DEFAULT_LIMITS, &mut args),
            Ok(Some(first_len))
        );
        assert_eq!(all(input).len(), 2);
    }

    #[test]
    fn declared_sizes_over_the_limits_are_refused_before_the_data_arrives() {
        let limits = Limits {
            max_args: 3,
            max_bulk: 10,
            max_inline: 16,
        };
        let mut args = Vec::new();
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*4\r\n", ProtocolError::MultibulkLength),
            (b"*9999999999999999999\r\n", ProtocolError::MultibulkLength),
            (
                b"*99999999999999999999999\r\n",
                ProtocolError::HeaderTooLong,
            ),
            (b"*1\r\n$11\r\n", ProtocolError::BulkLength),
            (b"*1\r\n$-1\r\n", ProtocolError::BulkLength),
            (b"*1\r\n$1x\r\n", ProtocolError::BulkLength),
            (b"*1\r\n$+1\r\n", ProtocolError::BulkLength),
            (b"*x\r\n", ProtocolError::MultibulkLength),
            (b"*1\r\n:1\r\n", ProtocolError::ExpectedBulk(b':')),
            (b"*1\r\n$1\r\nab\r\n", ProtocolError::ExpectedCrlf),
            (b"*1\r\x00", ProtocolError::MultibulkLength),
            (b"aaaaaaaaaaaaaaaaa", ProtocolError::InlineTooBig),
            (b"a b c d\r\n", ProtocolError::InlineTooBig),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse(input, &limits, &mut args).as_ref(),
                Err(expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // At the limits exactly, everything is accepted.
        assert_eq!(
            parse(b"*1\r\n$10\r\n0123456789\r\n", &limits, &mut args),
            Ok(Some(21))
        );
        assert_eq!(parse(b"a b c\r\n", &limits, &mut args), Ok(Some(7)));
    }

    #[test]
    fn integers_are_parsed_strictly() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_i64(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}

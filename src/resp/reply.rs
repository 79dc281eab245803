//! RESP2 replies, appended to a connection's output buffer: simple strings, errors,
//! integers, bulk strings, nil and array headers.
//!
//! Simple strings and errors are one line on the wire, so any CR or LF in them (or any
//! byte a client sent that is quoted back) would split the reply and desynchronise the
//! client: [`error`] and [`quoted`] keep such text to printable ASCII.

use std::io::Write;

/// Longest piece of client input quoted back in an error message.
const MAX_QUOTED: usize = 64;

/// `+text`; `text` is one of this module's callers' fixed words.
pub fn simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `-message`. A message that starts with an upper-case word (`ERR`, `NOPROTO`) keeps
/// it as the error code; CR, LF and other control bytes become spaces.
pub fn error(out: &mut Vec<u8>, message: &str) {
    out.push(b'-');
    out.extend(cut(message, MAX_ERROR_MESSAGE).bytes().map(|b| {
        if b < 0x20 || b == 0x7f {
            b' '
        } else {
            b
        }
    }));
    out.extend_from_slice(b"\r\n");
}

/// The longest error message a reply carries; a longer one (a counter name escaped,
/// a storage error naming a path) is cut at a character boundary, so every error reply
/// fits [`MAX_ERROR_REPLY`].
pub const MAX_ERROR_MESSAGE: usize = 256;
/// The most bytes an error reply takes.
pub const MAX_ERROR_REPLY: usize = MAX_ERROR_MESSAGE + 3;

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `:n`
pub fn integer(out: &mut Vec<u8>, n: i64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, ":{n}\r\n");
}

/// `$len` and the bytes.
pub fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = write!(out, "${}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A bulk string holding the decimal form of `n` (how Redis answers `GET` of a counter).
pub fn bulk_integer(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut cursor = &mut digits[..];
    let _ = write!(cursor, "{n}");
    let len = 20 - cursor.len();
    bulk(out, &digits[..len]);
}

/// The nil bulk string, `$-1`.
pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*n`: an array of the next `n` replies.
pub fn array(out: &mut Vec<u8>, n: usize) {
    let _ = write!(out, "*{n}\r\n");
}

/// Client bytes made safe to quote in an error: printable ASCII only (anything else
/// becomes `?`), at most [`MAX_QUOTED`] bytes, `...` marking a cut.
pub fn quoted(bytes: &[u8]) -> String {
    let mut text: String = bytes
        .iter()
        .take(MAX_QUOTED)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if bytes.len() > MAX_QUOTED {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reply_type_is_framed() {
        let mut out = Vec::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR bad\r\nthing");
        integer(&mut out, -5);
        bulk(&mut out, b"a\r\nb");
        bulk_integer(&mut out, i64::MIN);
        nil(&mut out);
        array(&mut out, 2);
        assert_eq!(
            out,
            b"+OK\r\n-ERR bad  thing\r\n:-5\r\n$4\r\na\r\nb\r\n$20\r\n-9223372036854775808\r\n$-1\r\n*2\r\n"
        );
    }

    #[test]
    fn quoting_keeps_client_bytes_printable_and_short() {
        assert_eq!(quoted(b"SET"), "SET");
        assert_eq!(quoted(b"a\r\n\xffb"), "a???b");
        let long = quoted(&[b'x'; 100]);
        assert_eq!(long.len(), MAX_QUOTED + 3);
        assert!(long.ends_with("..."));
    }
}

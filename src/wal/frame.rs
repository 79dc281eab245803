//! Entry framing, shared by segments and snapshots: sequence number (u64), data length
//! (u32), CRC32 (u32) over the sequence number, the length and the data, then the data.
//! All integers little-endian.
//!
//! Parsing works on a byte slice and tells a complete, checked frame from a frame that
//! runs past the end of the bytes (a torn write) and from one that is complete but wrong
//! (bad CRC or a length over the limit); recovery decides what each means by where it is.

/// Bytes before the data.
pub const FRAME_HEADER_LEN: usize = 16;

/// Largest data length a frame may claim; checked before anything is read or allocated.
pub const MAX_RECORD_BYTES: usize = 32 << 20;

/// Appends one frame to `out`.
pub fn encode_frame(seq: u64, data: &[u8], out: &mut Vec<u8>) {
    debug_assert!(data.len() <= MAX_RECORD_BYTES);
    let len = data.len() as u32;
    out.reserve(FRAME_HEADER_LEN + data.len());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(seq, len, data).to_le_bytes());
    out.extend_from_slice(data);
}

fn checksum(seq: u64, len: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(data);
    h.finalize()
}

/// One frame read from bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame whose CRC matches; `next` is the offset just after it.
    Frame {
        seq: u64,
        data: &'a [u8],
        next: usize,
    },
    /// The bytes end inside the frame's header or data.
    Incomplete,
    /// The frame is complete but does not check out; the reason says how.
    Bad(String),
}

/// Parses the frame starting at `offset` in `buf`.
pub fn parse_frame(buf: &[u8], offset: usize) -> Parsed<'_> {
    let Some(header) = buf.get(offset..offset + FRAME_HEADER_LEN) else {
        return Parsed::Incomplete;
    };
    let seq = u64::from_le_bytes(header[0..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if len as usize > MAX_RECORD_BYTES {
        return Parsed::Bad(format!(
            "record length {len} is over the {MAX_RECORD_BYTES}-byte limit"
        ));
    }
    let start = offset + FRAME_HEADER_LEN;
    let Some(data) = buf.get(start..start + len as usize) else {
        return Parsed::Incomplete;
    };
    let actual = checksum(seq, len, data);
    if actual != crc {
        return Parsed::Bad(format!(
            "checksum mismatch (stored {crc:08x}, computed {actual:08x})"
        ));
    }
    Parsed::Frame {
        seq,
        data,
        next: start + len as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_every_cut_is_incomplete() {
        let mut buf = Vec::new();
        encode_frame(7, b"hello", &mut buf);
        assert_eq!(
            parse_frame(&buf, 0),
            Parsed::Frame {
                seq: 7,
                data: b"hello",
                next: buf.len()
            }
        );
        for cut in 0..buf.len() {
            assert_eq!(parse_frame(&buf[..cut], 0), Parsed::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode_frame(7, b"hello", &mut buf);
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse_frame(&bad, 0), Parsed::Frame { .. }),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_huge_length_is_refused_without_reading() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&1u64.to_le_bytes());
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(parse_frame(&buf, 0), Parsed::Bad(_)));
    }
}

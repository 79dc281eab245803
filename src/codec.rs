//! The wire codec: where bytes become gossip frames and frames become bytes.
//!
//! A frame is a 10-byte header — magic `GCTR`, protocol version, frame type, payload
//! length (u32, big-endian) — then the payload. Integers in the payload are LEB128
//! varints (the incarnation is a fixed 8 bytes: it is random, so a varint would not
//! shrink it), strings are a varint length then UTF-8.
//!
//! Decoding trusts nothing: the payload length is checked against the caller's limit
//! before anything is allocated, every element count against the bytes that remain, and
//! every name against the naming rules, every version against [`MAX_VERSION`] and every
//! total against i64::MAX. Any byte string decodes to a frame or an error.
//!
//! Encoding and measuring share one walk over the frame ([`Sink`]), so the engine can
//! size frames without building them.

use crate::crdt::{
    validate_counter_name, validate_key, validate_node_name, CompactedSum, CounterEntry, Digest,
    Folded, KeyAccept, Keyed, OpKind, Origin, OriginDelta, OriginVersion, MAX_KEY_BYTES, MAX_TOTAL,
    MAX_VERSION,
};
use crate::keyring::{self, cluster::KeysMessage};
use crate::member::NodeName;
use crate::membership;
use crate::summary::{self, Span};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read};

pub const MAGIC: [u8; 4] = *b"GCTR";
/// The version of the frame protocol: frame types and their payloads. Nodes of different
/// protocol versions refuse each other's frames.
pub const PROTOCOL_VERSION: u8 = 2;
/// The version of the delta encoding ([`encode_delta`]): an origin, a version range and
/// absolute per-counter entries. Frames carry deltas in it and so does the WAL, whose
/// segment and snapshot format versions each name the delta encoding they hold (see
/// `wal::record`). It changes independently of [`PROTOCOL_VERSION`]: a new frame type
/// does not touch it, and any change to it is a new WAL format too.
pub const DELTA_ENCODING: u8 = 1;
pub const HEADER_LEN: usize = 10;
/// The default limit on a frame's payload.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// No configuration may raise the payload limit above this.
pub const MAX_PAYLOAD_LIMIT: usize = 16 << 20;
/// Longest address string (`host:port`) a frame may carry.
pub const MAX_ADDR_BYTES: usize = 256;
/// The largest Hello payload: a node name and two addresses, each after its length (a
/// varint of at most 2 bytes for these sizes).
pub const MAX_HELLO_PAYLOAD: usize = 3 * 2 + crate::crdt::MAX_NODE_NAME_BYTES + 2 * MAX_ADDR_BYTES;

/// Everything nodes say to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// First frame on a connection: who is talking and where to reach it.
    Hello {
        name: NodeName,
        gossip_addr: String,
        http_addr: String,
    },
    /// Anti-entropy, step 1: the sender's digest.
    Syn { digest: Digest },
    /// Step 2: what the Syn's sender lacks (first chunk), plus the replier's digest.
    SynAck {
        digest: Digest,
        delta: Vec<OriginDelta>,
    },
    /// Step 3, and further chunks of a split delta.
    Delta { delta: Vec<OriginDelta> },
    /// Anti-entropy step 1 for a digest too large to send whole: its summary, one hash
    /// per bucket of `span` cut into `2^bits` (see [`crate::summary`]); also the answer
    /// for a differing bucket of many origins, summarised finer.
    /// A non-zero `wants_whole` asks the receiver to answer with its whole digest
    /// instead, as pages carrying that number in `whole`: what a node that decides
    /// idempotency keys' stability needs.
    Summary {
        span: Span,
        bits: u8,
        wants_whole: u64,
        hashes: Vec<u64>,
    },
    /// The sender's digest of the origins whose hash lies in `span` (an origin of the
    /// span it leaves out, it knows of nothing): the answer to a Summary for the buckets
    /// that differ, and with `reply` set, a request for the receiver's page of the span
    /// if it lacks something the page shows. A non-zero `whole` marks the pages of a
    /// whole digest sent at one moment, in order from the first hash to the last, in
    /// answer to the request of that number.
    Page {
        span: Span,
        reply: bool,
        whole: u64,
        digest: Digest,
    },
    /// Eager push of fresh changes; receivers that learn from it pass it on.
    Push { delta: Vec<OriginDelta> },
    /// Origins the sender retired (see `crdt::retire`), each with the version it retired
    /// at: sent after deltas that carried their tombstones, so a receiver that holds one
    /// up to that version, and whose members no longer announce it, may retire it
    /// without waiting out its own retire-after time. A hint, never state: a receiver
    /// checks it against what it holds.
    Retired { digest: Digest },
    /// One part of the sender's compaction (see `crdt::compact`), offered to a peer that
    /// lacks part of an origin it compacted: its compacted origins, then its compacted
    /// sums, cut into `parts` frames sent in order on one link, all with the offer's
    /// number. The receiver adopts the whole once the last part is in, or not at all.
    /// Not part of the Maelstrom runtime's JSON (its nodes never retire).
    #[serde(skip)]
    Compaction {
        offer: u64,
        part: u32,
        parts: u32,
        origins: Digest,
        sums: Vec<CompactedSum>,
    },
    /// A membership message (SWIM): on the probe lane (one UDP datagram) or the reliable
    /// lane, as the message says. Not part of the Maelstrom runtime's JSON.
    #[serde(skip)]
    Member(membership::Message),
    /// The sender's keyring (`crate::keyring::cluster`); only on keyed connections.
    #[serde(skip)]
    Keys(KeysMessage),
}

/// Declares the frame types once: their wire bytes, their names in status figures, and
/// the list [`FrameType::ALL`] that every per-type table is sized and indexed by.
macro_rules! frame_types {
    ($($variant:ident = $byte:literal, $name:literal;)+) => {
        /// Frame types as they appear on the wire.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum FrameType {
            $($variant = $byte,)+
        }

        impl FrameType {
            /// Every frame type, in wire-byte order.
            pub const ALL: [FrameType; [$($byte),+].len()] = [$(FrameType::$variant),+];

            /// The type's name in status figures and metrics labels.
            pub fn name(self) -> &'static str {
                match self {
                    $(FrameType::$variant => $name,)+
                }
            }
        }
    };
}

frame_types! {
    Hello = 1, "hello";
    Syn = 2, "syn";
    SynAck = 3, "syn_ack";
    Delta = 4, "delta";
    Push = 5, "push";
    Member = 6, "member";
    Keys = 7, "keys";
    Summary = 8, "summary";
    Page = 9, "page";
    Retired = 10, "retired";
    Compaction = 11, "compaction";
}

impl FrameType {
    /// How many frame types there are.
    pub const COUNT: usize = FrameType::ALL.len();

    fn from_byte(b: u8) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| *t as u8 == b)
    }

    /// Position in [`FrameType::ALL`].
    fn index(self) -> usize {
        FrameType::ALL
            .iter()
            .position(|t| *t == self)
            .expect("every type is listed")
    }
}

/// A figure kept per frame type (frames or bytes sent, say), indexed by [`FrameType`];
/// serializes as a map from type name to figure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerFrameType([u64; FrameType::COUNT]);

impl PerFrameType {
    /// Each type with its figure, in wire-byte order.
    pub fn iter(&self) -> impl Iterator<Item = (FrameType, u64)> + '_ {
        FrameType::ALL.into_iter().map(|t| (t, self[t]))
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: &PerFrameType) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

impl std::ops::Index<FrameType> for PerFrameType {
    type Output = u64;

    fn index(&self, t: FrameType) -> &u64 {
        &self.0[t.index()]
    }
}

impl std::ops::IndexMut<FrameType> for PerFrameType {
    fn index_mut(&mut self, t: FrameType) -> &mut u64 {
        &mut self.0[t.index()]
    }
}

impl Serialize for PerFrameType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter().map(|(t, v)| (t.name(), v)))
    }
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello { .. } => FrameType::Hello,
            Frame::Syn { .. } => FrameType::Syn,
            Frame::SynAck { .. } => FrameType::SynAck,
            Frame::Delta { .. } => FrameType::Delta,
            Frame::Push { .. } => FrameType::Push,
            Frame::Member(_) => FrameType::Member,
            Frame::Keys(_) => FrameType::Keys,
            Frame::Summary { .. } => FrameType::Summary,
            Frame::Page { .. } => FrameType::Page,
            Frame::Retired { .. } => FrameType::Retired,
            Frame::Compaction { .. } => FrameType::Compaction,
        }
    }
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    BadMagic,
    UnsupportedVersion(u8),
    UnknownType(u8),
    TooLarge {
        len: usize,
        max: usize,
    },
    Truncated,
    TrailingBytes(usize),
    VarintOverflow,
    BadUtf8,
    BadName(String),
    /// A structural rule was broken (for example a delta whose range runs backwards).
    Invalid(&'static str),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::BadMagic => f.write_str("bad magic: not a gctr frame"),
            CodecError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            CodecError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            CodecError::TooLarge { len, max } => {
                write!(
                    f,
                    "frame payload of {len} bytes is over the {max}-byte limit"
                )
            }
            CodecError::Truncated => f.write_str("frame ends early"),
            CodecError::TrailingBytes(n) => write!(f, "{n} bytes after the end of the frame"),
            CodecError::VarintOverflow => f.write_str("integer does not fit 64 bits"),
            CodecError::BadUtf8 => f.write_str("string is not UTF-8"),
            CodecError::BadName(e) => write!(f, "bad name: {e}"),
            CodecError::Invalid(what) => write!(f, "invalid frame: {what}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Reading a frame from a stream fails on I/O or on the bytes.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Codec(CodecError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read: {e}"),
            ReadError::Codec(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

/// Where an encoding walk puts its bytes: a buffer, or a counter that only measures.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

pub(crate) struct Measure(pub(crate) usize);

impl Sink for Measure {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

pub(crate) fn put_varint(out: &mut impl Sink, mut v: u64) {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[i] = byte;
            i += 1;
            break;
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
    out.put(&buf[..i]);
}

pub(crate) fn put_str(out: &mut impl Sink, s: &str) {
    put_varint(out, s.len() as u64);
    out.put(s.as_bytes());
}

fn put_origin(out: &mut impl Sink, o: &Origin) {
    put_str(out, &o.node);
    out.put(&o.incarnation.to_be_bytes());
}

fn put_span(out: &mut impl Sink, span: &Span) {
    out.put(&span.lo.to_be_bytes());
    out.put(&span.hi.to_be_bytes());
}

fn put_digest(out: &mut impl Sink, d: &[OriginVersion]) {
    put_varint(out, d.len() as u64);
    for ov in d {
        put_digest_entry(out, ov);
    }
}

fn put_digest_entry(out: &mut impl Sink, ov: &OriginVersion) {
    put_origin(out, &ov.origin);
    put_varint(out, ov.version);
}

/// A plain entry: counter, `p`, `n`, version. An entry with keyed data starts with an
/// empty name (no counter has one), then a tag: [`TAG_FOLDED`], a plain entry and the
/// ledger's `p`, `n` and `through`; or [`TAG_ACCEPT`], the counter, the key, the
/// direction (0 increment, 1 decrement), the amount, the acceptor's clock and the version.
fn put_entry(out: &mut impl Sink, e: &CounterEntry) {
    match e.keyed.as_deref() {
        None => put_plain_entry(out, e),
        Some(Keyed::Folded(f)) => {
            put_varint(out, 0);
            out.put(&[TAG_FOLDED]);
            put_plain_entry(out, e);
            put_varint(out, f.p);
            put_varint(out, f.n);
            put_varint(out, f.through);
        }
        Some(Keyed::Accept(a)) => {
            put_varint(out, 0);
            out.put(&[TAG_ACCEPT]);
            put_str(out, &e.counter);
            put_str(out, &a.key);
            out.put(&[match a.kind {
                OpKind::Increment => 0,
                OpKind::Decrement => 1,
            }]);
            put_varint(out, a.amount);
            put_varint(out, a.at_ms);
            put_varint(out, e.version);
        }
    }
}

fn put_plain_entry(out: &mut impl Sink, e: &CounterEntry) {
    put_str(out, &e.counter);
    put_varint(out, e.p);
    put_varint(out, e.n);
    put_varint(out, e.version);
}

fn put_delta_head(out: &mut impl Sink, d: &OriginDelta) {
    put_origin(out, &d.origin);
    put_varint(out, d.from);
    put_varint(out, d.to);
    put_varint(out, d.entries.len() as u64);
}

fn put_delta(out: &mut impl Sink, d: &OriginDelta) {
    put_delta_head(out, d);
    for e in &d.entries {
        put_entry(out, e);
    }
}

fn put_deltas(out: &mut impl Sink, deltas: &[OriginDelta]) {
    put_varint(out, deltas.len() as u64);
    for d in deltas {
        put_delta(out, d);
    }
}

fn put_payload(out: &mut impl Sink, frame: &Frame) {
    match frame {
        Frame::Hello {
            name,
            gossip_addr,
            http_addr,
        } => {
            put_str(out, name.as_str());
            put_str(out, gossip_addr);
            put_str(out, http_addr);
        }
        Frame::Syn { digest } | Frame::Retired { digest } => put_digest(out, digest),
        Frame::SynAck { digest, delta } => {
            put_digest(out, digest);
            put_deltas(out, delta);
        }
        Frame::Delta { delta } | Frame::Push { delta } => put_deltas(out, delta),
        Frame::Summary {
            span,
            bits,
            wants_whole,
            hashes,
        } => {
            put_span(out, span);
            out.put(&[*bits]);
            out.put(&wants_whole.to_be_bytes());
            for h in hashes {
                out.put(&h.to_be_bytes());
            }
        }
        Frame::Page {
            span,
            reply,
            whole,
            digest,
        } => {
            put_span(out, span);
            out.put(&[u8::from(*reply)]);
            out.put(&whole.to_be_bytes());
            put_digest(out, digest);
        }
        Frame::Compaction {
            offer,
            part,
            parts,
            origins,
            sums,
        } => {
            out.put(&offer.to_be_bytes());
            put_varint(out, u64::from(*part));
            put_varint(out, u64::from(*parts));
            put_digest(out, origins);
            put_compacted_sums(out, sums);
        }
        Frame::Member(msg) => membership::wire::put_message(out, msg),
        Frame::Keys(msg) => keyring::wire::put_keys(out, msg),
    }
}

/// Bytes a payload takes.
pub fn payload_len(frame: &Frame) -> usize {
    let mut m = Measure(0);
    put_payload(&mut m, frame);
    m.0
}

/// Bytes a whole frame takes on the wire, header included.
pub fn encoded_len(frame: &Frame) -> usize {
    HEADER_LEN + payload_len(frame)
}

/// Bytes one entry adds to a delta.
pub fn entry_len(e: &CounterEntry) -> usize {
    let mut m = Measure(0);
    put_entry(&mut m, e);
    m.0
}

/// Bytes a delta adds to a frame before its entries (origin, range, count), with room
/// for the largest entry count a frame can hold.
pub fn delta_head_len(origin: &Origin) -> usize {
    let mut m = Measure(0);
    put_origin(&mut m, origin);
    3 * 10 + m.0
}

/// Bytes one compacted sum takes in a Compaction frame.
pub fn compacted_sum_len(sum: &CompactedSum) -> usize {
    let mut m = Measure(0);
    put_compacted_sum(&mut m, sum);
    m.0
}

fn put_compacted_sums(out: &mut impl Sink, sums: &[CompactedSum]) {
    put_varint(out, sums.len() as u64);
    for sum in sums {
        put_compacted_sum(out, sum);
    }
}

/// A compacted sum: the counter, then each of `p` and `n` as two varints, high half
/// first.
fn put_compacted_sum(out: &mut impl Sink, sum: &CompactedSum) {
    put_str(out, &sum.counter);
    for v in [sum.p, sum.n] {
        put_varint(out, (v >> 64) as u64);
        put_varint(out, v as u64);
    }
}

/// Bytes a digest takes in a frame (the whole payload of a Syn).
pub fn digest_len(d: &[OriginVersion]) -> usize {
    let mut m = Measure(0);
    put_digest(&mut m, d);
    m.0
}

/// Bytes one origin's entry adds to a digest.
pub fn digest_entry_len(ov: &OriginVersion) -> usize {
    let mut m = Measure(0);
    put_digest_entry(&mut m, ov);
    m.0
}

/// Bytes one delta takes in the delta encoding ([`encode_delta`]).
pub fn delta_len(d: &OriginDelta) -> usize {
    let mut m = Measure(0);
    put_delta(&mut m, d);
    m.0
}

/// Appends one delta in the encoding frames use; the WAL's records use it too, so a
/// delta has one byte form whether it travels or is logged.
pub fn encode_delta(d: &OriginDelta, out: &mut Vec<u8>) {
    put_delta(out, d);
}

/// Appends a digest in the encoding frames use (the WAL logs retirements with it).
pub fn encode_digest(d: &[OriginVersion], out: &mut Vec<u8>) {
    put_digest(out, d);
}

/// Appends a count, then each compacted sum.
pub fn encode_compacted_sums(sums: &[CompactedSum], out: &mut Vec<u8>) {
    put_compacted_sums(out, sums);
}

/// Appends a count, then each delta ([`encode_delta`]).
pub fn encode_deltas(deltas: &[OriginDelta], out: &mut Vec<u8>) {
    put_deltas(out, deltas);
}

/// Appends one LEB128 varint.
pub fn encode_varint(v: u64, out: &mut Vec<u8>) {
    put_varint(out, v);
}

/// Appends the whole frame to `out`.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    let len = payload_len(frame);
    out.reserve(HEADER_LEN + len);
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(frame.frame_type() as u8);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    put_payload(out, frame);
}

pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(frame, &mut out);
    out
}

/// Checks a header and returns the frame type and payload length, refusing a length
/// above `max_payload` before anything is allocated for it.
pub fn parse_header(
    header: &[u8; HEADER_LEN],
    max_payload: usize,
) -> Result<(FrameType, usize), CodecError> {
    if header[..4] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if header[4] != PROTOCOL_VERSION {
        return Err(CodecError::UnsupportedVersion(header[4]));
    }
    let kind = FrameType::from_byte(header[5]).ok_or(CodecError::UnknownType(header[5]))?;
    let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
    let max = max_payload.min(MAX_PAYLOAD_LIMIT);
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    Ok((kind, len))
}

/// Decodes one whole frame (header and payload, nothing after).
pub fn decode(bytes: &[u8], max_payload: usize) -> Result<Frame, CodecError> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(CodecError::Truncated)?;
    let (kind, len) = parse_header(header, max_payload)?;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() < len {
        return Err(CodecError::Truncated);
    }
    if payload.len() > len {
        return Err(CodecError::TrailingBytes(payload.len() - len));
    }
    decode_payload(kind, payload)
}

/// A frame as read from a stream, its payload not yet decoded: where the raw bytes can
/// be checked (a MAC, say) before anything in them is parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub kind: FrameType,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn decode(&self) -> Result<Frame, CodecError> {
        decode_payload(self.kind, &self.payload)
    }
}

/// Reads one frame's header, checks its length against `max_payload` before allocating,
/// then reads the payload without decoding it.
pub fn read_raw_frame(r: &mut impl Read, max_payload: usize) -> Result<RawFrame, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).map_err(ReadError::Io)?;
    let (kind, len) = parse_header(&header, max_payload).map_err(ReadError::Codec)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(ReadError::Io)?;
    Ok(RawFrame { kind, payload })
}

/// Reads and decodes one frame ([`read_raw_frame`], then [`RawFrame::decode`]).
pub fn read_frame(r: &mut impl Read, max_payload: usize) -> Result<Frame, ReadError> {
    read_raw_frame(r, max_payload)?
        .decode()
        .map_err(ReadError::Codec)
}

/// Decodes a payload whose header was already checked.
pub fn decode_payload(kind: FrameType, payload: &[u8]) -> Result<Frame, CodecError> {
    let mut r = Decoder::new(payload);
    let frame = match kind {
        FrameType::Hello => {
            let name = r.string(crate::crdt::MAX_NODE_NAME_BYTES)?;
            Frame::Hello {
                name: NodeName::new(&name).map_err(|e| CodecError::BadName(e.0))?,
                gossip_addr: r.string(MAX_ADDR_BYTES)?,
                http_addr: r.string(MAX_ADDR_BYTES)?,
            }
        }
        FrameType::Syn => Frame::Syn {
            digest: r.digest()?,
        },
        FrameType::SynAck => Frame::SynAck {
            digest: r.digest()?,
            delta: r.deltas()?,
        },
        FrameType::Delta => Frame::Delta { delta: r.deltas()? },
        FrameType::Push => Frame::Push { delta: r.deltas()? },
        FrameType::Member => Frame::Member(membership::wire::decode(r.take_rest())?),
        FrameType::Keys => Frame::Keys(keyring::wire::decode_keys(&mut r)?),
        FrameType::Summary => r.summary()?,
        FrameType::Page => r.page()?,
        FrameType::Retired => Frame::Retired {
            digest: r.digest()?,
        },
        FrameType::Compaction => r.compaction()?,
    };
    if !r.buf.is_empty() {
        return Err(CodecError::TrailingBytes(r.buf.len()));
    }
    Ok(frame)
}

/// Smallest encodings, used to bound element counts by the bytes that remain.
const MIN_ORIGIN_LEN: usize = 1 + 1 + 8;
const MIN_DIGEST_ENTRY_LEN: usize = MIN_ORIGIN_LEN + 1;
const MIN_DELTA_LEN: usize = MIN_ORIGIN_LEN + 3;
const MIN_ENTRY_LEN: usize = 1 + 1 + 3;
const MIN_COMPACTED_SUM_LEN: usize = 1 + 1 + 4;
/// Most parts one Compaction offer may be cut into.
pub const MAX_COMPACTION_PARTS: u64 = 1 << 16;
/// The tags of entries with keyed data (see `put_entry`).
const TAG_FOLDED: u8 = 1;
const TAG_ACCEPT: u8 = 2;

/// Reads the payload encoding from a byte slice, trusting nothing: frames, and the WAL's
/// records, which hold deltas in the same encoding.
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Every byte not read yet, for a decoder of their own.
    fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&[u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.buf.split_first().ok_or(CodecError::Truncated)?;
            self.buf = rest;
            let bits = (byte & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(CodecError::VarintOverflow);
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::VarintOverflow)
    }

    pub(crate) fn u64_fixed(&mut self) -> Result<u64, CodecError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// An element count, refused if the remaining bytes cannot hold that many elements.
    pub(crate) fn count(&mut self, min_element_len: usize) -> Result<usize, CodecError> {
        let n = self.varint()?;
        if n > (self.buf.len() / min_element_len) as u64 {
            return Err(CodecError::Truncated);
        }
        Ok(n as usize)
    }

    pub(crate) fn string(&mut self, max: usize) -> Result<String, CodecError> {
        let len = self.varint()?;
        if len > max as u64 {
            return Err(CodecError::BadName(format!(
                "string of {len} bytes is over the {max}-byte limit"
            )));
        }
        let bytes = self.bytes(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::BadUtf8)
    }

    fn origin(&mut self) -> Result<Origin, CodecError> {
        let node = self.string(crate::crdt::MAX_NODE_NAME_BYTES)?;
        validate_node_name(&node).map_err(|e| CodecError::BadName(e.0))?;
        Ok(Origin {
            node,
            incarnation: self.u64_fixed()?,
        })
    }

    /// A version, refused above [`MAX_VERSION`]: no peer can have made one.
    fn version(&mut self) -> Result<u64, CodecError> {
        let v = self.varint()?;
        if v > MAX_VERSION {
            return Err(CodecError::Invalid("a version above 2^62"));
        }
        Ok(v)
    }

    /// A total of increments or decrements, refused above [`MAX_TOTAL`] (i64::MAX).
    fn total(&mut self) -> Result<u64, CodecError> {
        let t = self.varint()?;
        if t > MAX_TOTAL {
            return Err(CodecError::Invalid("a total above i64::MAX"));
        }
        Ok(t)
    }

    /// A count, then that many (origin, version) pairs.
    /// A Compaction frame's payload: its offer, part and part count (the part below
    /// the count, the count at most [`MAX_COMPACTION_PARTS`]), origins and sums.
    fn compaction(&mut self) -> Result<Frame, CodecError> {
        let offer = self.u64_fixed()?;
        let part = self.varint()?;
        let parts = self.varint()?;
        if parts == 0 || parts > MAX_COMPACTION_PARTS || part >= parts {
            return Err(CodecError::Invalid(
                "a compaction part numbered past its count, or too many parts",
            ));
        }
        let origins = self.digest()?;
        let sums = self.compacted_sums()?;
        Ok(Frame::Compaction {
            offer,
            part: part as u32,
            parts: parts as u32,
            origins,
            sums,
        })
    }

    /// A count, then that many compacted sums.
    pub fn compacted_sums(&mut self) -> Result<Vec<CompactedSum>, CodecError> {
        let n = self.count(MIN_COMPACTED_SUM_LEN)?;
        let mut sums = Vec::with_capacity(n);
        for _ in 0..n {
            let counter = self.string(crate::crdt::MAX_COUNTER_NAME_BYTES)?;
            validate_counter_name(&counter).map_err(|e| CodecError::BadName(e.0))?;
            let mut halves = [0u128; 4];
            for h in &mut halves {
                *h = u128::from(self.varint()?);
            }
            sums.push(CompactedSum {
                counter,
                p: halves[0] << 64 | halves[1],
                n: halves[2] << 64 | halves[3],
            });
        }
        Ok(sums)
    }

    pub fn digest(&mut self) -> Result<Digest, CodecError> {
        let n = self.count(MIN_DIGEST_ENTRY_LEN)?;
        let mut d = Vec::with_capacity(n);
        for _ in 0..n {
            d.push(OriginVersion {
                origin: self.origin()?,
                version: self.version()?,
            });
        }
        Ok(d)
    }

    /// A Summary's payload: its span, the bucket bits (at most [`summary::MAX_BITS`]),
    /// the whole-digest request (0 for none), then one hash per bucket.
    fn summary(&mut self) -> Result<Frame, CodecError> {
        let span = self.span()?;
        let bits = self.bytes(1)?[0];
        if bits > summary::MAX_BITS {
            return Err(CodecError::Invalid("a summary of more than 2^8 buckets"));
        }
        let wants_whole = self.u64_fixed()?;
        let hashes = (0..1usize << bits)
            .map(|_| self.u64_fixed())
            .collect::<Result<_, _>>()?;
        Ok(Frame::Summary {
            span,
            bits,
            wants_whole,
            hashes,
        })
    }

    /// Two hashes, the first no larger than the second.
    fn span(&mut self) -> Result<Span, CodecError> {
        let span = Span {
            lo: self.u64_fixed()?,
            hi: self.u64_fixed()?,
        };
        if span.lo > span.hi {
            return Err(CodecError::Invalid("a span that ends before it starts"));
        }
        Ok(span)
    }

    /// A Page's payload: its span, the reply flag, the whole-digest request it answers
    /// (0 for none), and a digest of origins in the span.
    fn page(&mut self) -> Result<Frame, CodecError> {
        let span = self.span()?;
        let reply = match self.bytes(1)?[0] {
            0 => false,
            1 => true,
            _ => {
                return Err(CodecError::Invalid(
                    "a page's reply flag is neither 0 nor 1",
                ))
            }
        };
        let whole = self.u64_fixed()?;
        let digest = self.digest()?;
        if digest
            .iter()
            .any(|ov| !span.contains(summary::origin_hash(&ov.origin)))
        {
            return Err(CodecError::Invalid("a page's origin lies outside its span"));
        }
        Ok(Frame::Page {
            span,
            reply,
            whole,
            digest,
        })
    }

    /// A count, then that many deltas.
    pub fn deltas(&mut self) -> Result<Vec<OriginDelta>, CodecError> {
        let n = self.count(MIN_DELTA_LEN)?;
        let mut deltas = Vec::with_capacity(n);
        for _ in 0..n {
            deltas.push(self.delta()?);
        }
        Ok(deltas)
    }

    /// One delta: origin, range, entries, each name checked against the naming rules.
    pub fn delta(&mut self) -> Result<OriginDelta, CodecError> {
        let origin = self.origin()?;
        let from = self.version()?;
        let to = self.version()?;
        if to < from {
            return Err(CodecError::Invalid("delta range runs backwards"));
        }
        let count = self.count(MIN_ENTRY_LEN)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(self.entry()?);
        }
        Ok(OriginDelta {
            origin,
            from,
            to,
            entries,
        })
    }
}

impl Decoder<'_> {
    /// One entry of a delta: plain, or with keyed data (see `put_entry`).
    fn entry(&mut self) -> Result<CounterEntry, CodecError> {
        if self.buf.first() != Some(&0) {
            return self.plain_entry();
        }
        self.bytes(1)?;
        match self.bytes(1)?[0] {
            TAG_FOLDED => {
                let mut entry = self.plain_entry()?;
                let folded = Folded {
                    p: self.total()?,
                    n: self.total()?,
                    through: self.version()?,
                };
                if folded.p > entry.p || folded.n > entry.n || folded.through >= entry.version {
                    return Err(CodecError::Invalid(
                        "a fold ledger beyond its entry's totals or version",
                    ));
                }
                entry.keyed = Some(Box::new(Keyed::Folded(folded)));
                Ok(entry)
            }
            TAG_ACCEPT => {
                let counter = self.counter_name()?;
                let key = self.string(MAX_KEY_BYTES)?;
                validate_key(&key).map_err(|e| CodecError::BadName(e.0))?;
                let kind = match self.bytes(1)?[0] {
                    0 => OpKind::Increment,
                    1 => OpKind::Decrement,
                    _ => return Err(CodecError::Invalid("an unknown operation direction")),
                };
                let amount = self.total()?;
                if amount == 0 {
                    return Err(CodecError::Invalid("an acceptance of amount 0"));
                }
                let at_ms = self.varint()?;
                let version = self.version()?;
                if version == 0 {
                    return Err(CodecError::Invalid("an acceptance at version 0"));
                }
                let mut entry = CounterEntry::plain(counter, 0, 0, version);
                entry.keyed = Some(Box::new(Keyed::Accept(KeyAccept {
                    key,
                    kind,
                    amount,
                    at_ms,
                })));
                Ok(entry)
            }
            _ => Err(CodecError::Invalid("an unknown entry tag")),
        }
    }

    fn plain_entry(&mut self) -> Result<CounterEntry, CodecError> {
        let counter = self.counter_name()?;
        Ok(CounterEntry::plain(
            counter,
            self.total()?,
            self.total()?,
            self.version()?,
        ))
    }

    fn counter_name(&mut self) -> Result<String, CodecError> {
        let counter = self.string(crate::crdt::MAX_COUNTER_NAME_BYTES)?;
        validate_counter_name(&counter).map_err(|e| CodecError::BadName(e.0))?;
        Ok(counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_length_header_is_refused_before_allocating() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[PROTOCOL_VERSION, FrameType::Syn as u8]);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = read_frame(&mut bytes.as_slice(), DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert!(matches!(err, ReadError::Codec(CodecError::TooLarge { .. })));
    }

    #[test]
    fn a_count_larger_than_the_bytes_left_is_refused() {
        let mut payload = Vec::new();
        put_varint(&mut payload, u64::MAX >> 1);
        assert_eq!(
            decode_payload(FrameType::Syn, &payload),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn the_count_bounds_are_the_smallest_encodings_there_are() {
        let origin = Origin::new("a", 0);
        let mut digest_entry = Vec::new();
        put_digest(
            &mut digest_entry,
            &[OriginVersion {
                origin: origin.clone(),
                version: 0,
            }],
        );
        assert_eq!(
            digest_entry.len() - 1,
            MIN_DIGEST_ENTRY_LEN,
            "less the count"
        );
        let delta = OriginDelta {
            origin,
            from: 0,
            to: 0,
            entries: Vec::new(),
        };
        assert_eq!(delta_len(&delta), MIN_DELTA_LEN);
        assert_eq!(entry_len(&CounterEntry::plain("c", 0, 0, 0)), MIN_ENTRY_LEN);
        let mut folded = CounterEntry::plain("c", 0, 0, 1);
        folded.keyed = Some(Box::new(Keyed::Folded(Folded::default())));
        assert!(entry_len(&folded) > MIN_ENTRY_LEN);
    }

    #[test]
    fn an_element_count_one_above_what_the_bytes_left_can_hold_is_refused() {
        // Refused from the count alone, so nothing is reserved for elements whose bytes
        // are not there: at most (bytes left / smallest element) elements are ever reserved.
        for (min, left) in [
            (MIN_ENTRY_LEN, 10),
            (MIN_DIGEST_ENTRY_LEN, 40),
            (MIN_DELTA_LEN, 38),
        ] {
            let room = left / min;
            for n in [room, room + 1] {
                let mut bytes = Vec::new();
                put_varint(&mut bytes, n as u64);
                bytes.resize(bytes.len() + left, 0);
                let expected = if n == room {
                    Ok(room)
                } else {
                    Err(CodecError::Truncated)
                };
                assert_eq!(
                    Decoder::new(&bytes).count(min),
                    expected,
                    "{n} × {min} in {left}"
                );
            }
        }
    }

    #[test]
    fn per_type_figures_add_up_and_read_as_a_map_of_type_names() {
        let names: Vec<&str> = FrameType::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "hello",
                "syn",
                "syn_ack",
                "delta",
                "push",
                "member",
                "keys",
                "summary",
                "page",
                "retired",
                "compaction"
            ]
        );
        for t in FrameType::ALL {
            assert_eq!(FrameType::from_byte(t as u8), Some(t));
        }
        assert_eq!(FrameType::from_byte(0), None);
        let mut a = PerFrameType::default();
        a[FrameType::Syn] += 2;
        a[FrameType::Member] += 5;
        let mut b = PerFrameType::default();
        b[FrameType::Syn] += 3;
        a.add(&b);
        assert_eq!(
            (a[FrameType::Syn], a[FrameType::Member], a.total()),
            (5, 5, 10)
        );
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"hello":0,"syn":5,"syn_ack":0,"delta":0,"push":0,"member":5,"keys":0,"summary":0,"page":0,"retired":0,"compaction":0}"#
        );
    }

    #[test]
    fn every_decoding_error_says_what_was_wrong() {
        let said = [
            CodecError::BadMagic,
            CodecError::UnsupportedVersion(9),
            CodecError::UnknownType(7),
            CodecError::TooLarge { len: 600, max: 512 },
            CodecError::Truncated,
            CodecError::TrailingBytes(3),
            CodecError::VarintOverflow,
            CodecError::BadUtf8,
            CodecError::BadName("node name is empty".into()),
            CodecError::Invalid("delta range runs backwards"),
        ]
        .map(|e| ReadError::Codec(e).to_string());
        assert_eq!(
            said,
            [
                "bad magic: not a gctr frame",
                "unsupported protocol version 9",
                "unknown frame type 7",
                "frame payload of 600 bytes is over the 512-byte limit",
                "frame ends early",
                "3 bytes after the end of the frame",
                "integer does not fit 64 bits",
                "string is not UTF-8",
                "bad name: node name is empty",
                "invalid frame: delta range runs backwards",
            ]
        );
        let io = ReadError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
        assert_eq!(io.to_string(), "read: eof");
    }

    fn keyed_delta() -> OriginDelta {
        let mut folded = CounterEntry::plain("views", 9, 2, 7);
        folded.keyed = Some(Box::new(Keyed::Folded(Folded {
            p: 5,
            n: 2,
            through: 6,
        })));
        let mut accept = CounterEntry::plain("views", 0, 0, 8);
        accept.keyed = Some(Box::new(Keyed::Accept(KeyAccept {
            key: "order-17".into(),
            kind: OpKind::Decrement,
            amount: 3,
            at_ms: 1_700_000_000_123,
        })));
        OriginDelta {
            origin: Origin::new("a", 1),
            from: 6,
            to: 8,
            entries: vec![CounterEntry::plain("plain", 1, 0, 6), folded, accept],
        }
    }

    #[test]
    fn keyed_entries_round_trip_and_measure_what_they_encode_to() {
        let delta = keyed_delta();
        let frame = Frame::Delta {
            delta: vec![delta.clone()],
        };
        let bytes = encode(&frame);
        assert_eq!(decode(&bytes, DEFAULT_MAX_PAYLOAD).unwrap(), frame);
        let mut one = Vec::new();
        encode_delta(&delta, &mut one);
        assert_eq!(one.len(), delta_len(&delta));
        let entries: usize = delta.entries.iter().map(entry_len).sum();
        let mut head = Vec::new();
        put_delta_head(&mut head, &delta);
        assert_eq!(head.len() + entries, one.len());
    }

    #[test]
    fn a_keyed_entry_that_cannot_be_true_is_refused() {
        let decode_with = |edit: &dyn Fn(&mut OriginDelta)| {
            let mut delta = keyed_delta();
            edit(&mut delta);
            let mut bytes = Vec::new();
            encode_delta(&delta, &mut bytes);
            Decoder::new(&bytes).delta().map(|_| ())
        };
        assert_eq!(decode_with(&|_| {}), Ok(()));
        let ledger = |e: &mut CounterEntry, f: Folded| {
            e.keyed = Some(Box::new(Keyed::Folded(f)));
        };
        let beyond = CodecError::Invalid("a fold ledger beyond its entry's totals or version");
        for bad in [
            Folded {
                p: 10,
                n: 0,
                through: 1,
            },
            Folded {
                p: 0,
                n: 3,
                through: 1,
            },
            Folded {
                p: 0,
                n: 0,
                through: 7,
            },
        ] {
            assert_eq!(
                decode_with(&|d| ledger(&mut d.entries[1], bad)),
                Err(beyond.clone())
            );
        }
        let accept = |d: &mut OriginDelta, f: &dyn Fn(&mut KeyAccept)| {
            if let Some(Keyed::Accept(a)) = d.entries[2].keyed.as_deref_mut() {
                f(a);
            }
        };
        assert_eq!(
            decode_with(&|d| accept(d, &|a| a.amount = 0)),
            Err(CodecError::Invalid("an acceptance of amount 0"))
        );
        assert_eq!(
            decode_with(&|d| accept(d, &|a| a.key = "a\nb".into())),
            Err(CodecError::BadName(
                "idempotency key contains a control character".into()
            ))
        );
        let mut bytes = Vec::new();
        encode_delta(&keyed_delta(), &mut bytes);
        let marker = [0, TAG_ACCEPT, 5, b'v'];
        let at = bytes.windows(4).position(|w| w == marker).unwrap();
        bytes[at + 1] = 9;
        assert_eq!(
            Decoder::new(&bytes).delta().map(|_| ()),
            Err(CodecError::Invalid("an unknown entry tag"))
        );
    }

    #[test]
    fn summaries_and_pages_round_trip_and_measure_what_they_encode_to() {
        let origin = Origin::new("a", 3);
        let hash = summary::origin_hash(&origin);
        let frames = [
            Frame::Summary {
                span: Span::ALL,
                bits: 0,
                wants_whole: 77,
                hashes: vec![9],
            },
            Frame::Summary {
                span: Span { lo: 3, hi: 3 << 40 },
                bits: summary::MAX_BITS,
                wants_whole: 0,
                hashes: (0..256).collect(),
            },
            Frame::Page {
                span: Span::ALL,
                reply: true,
                whole: 0,
                digest: Vec::new(),
            },
            Frame::Page {
                span: Span { lo: hash, hi: hash },
                reply: false,
                whole: u64::MAX,
                digest: vec![OriginVersion { origin, version: 4 }],
            },
        ];
        for frame in frames {
            let bytes = encode(&frame);
            assert_eq!(bytes.len(), encoded_len(&frame));
            assert_eq!(decode(&bytes, DEFAULT_MAX_PAYLOAD), Ok(frame));
        }
        assert_eq!(summary::summary_len(3) + HEADER_LEN, {
            let (span, hashes) = (Span::ALL, vec![0; 8]);
            encoded_len(&Frame::Summary {
                span,
                bits: 3,
                wants_whole: 0,
                hashes,
            })
        });
    }

    #[test]
    fn a_summary_or_page_that_cannot_be_true_is_refused() {
        let payload = |kind: FrameType, bytes: &[u8]| decode_payload(kind, bytes);
        let all = [[0u8; 8], [0xff; 8]].concat();
        // More buckets than a summary may have, before reading (or allocating) them.
        assert_eq!(
            payload(
                FrameType::Summary,
                &[&all[..], &[summary::MAX_BITS + 1]].concat()
            ),
            Err(CodecError::Invalid("a summary of more than 2^8 buckets"))
        );
        assert_eq!(
            payload(
                FrameType::Summary,
                &[&all[..], &[2], &[0; 8], &[0, 0, 0, 0, 0, 0, 0, 1]].concat()
            ),
            Err(CodecError::Truncated)
        );
        let mut backwards = Vec::new();
        backwards.extend(5u64.to_be_bytes());
        backwards.extend(4u64.to_be_bytes());
        backwards.extend([0, 0]);
        for kind in [FrameType::Page, FrameType::Summary] {
            assert_eq!(
                payload(kind, &backwards),
                Err(CodecError::Invalid("a span that ends before it starts"))
            );
        }
        let mut flag = Vec::new();
        flag.extend(0u64.to_be_bytes());
        flag.extend(u64::MAX.to_be_bytes());
        flag.extend([2]);
        flag.extend(0u64.to_be_bytes());
        flag.extend([0]);
        assert_eq!(
            payload(FrameType::Page, &flag),
            Err(CodecError::Invalid(
                "a page's reply flag is neither 0 nor 1"
            ))
        );
        let origin = Origin::new("a", 3);
        let hash = summary::origin_hash(&origin);
        let outside = if hash == u64::MAX {
            Span { lo: 0, hi: 0 }
        } else {
            Span {
                lo: hash + 1,
                hi: u64::MAX,
            }
        };
        let page = encode(&Frame::Page {
            span: outside,
            reply: false,
            whole: 0,
            digest: vec![OriginVersion { origin, version: 1 }],
        });
        assert_eq!(
            decode(&page, DEFAULT_MAX_PAYLOAD),
            Err(CodecError::Invalid("a page's origin lies outside its span"))
        );
    }

    #[test]
    fn a_frame_with_bytes_after_its_payload_says_how_many() {
        let mut bytes = encode(&Frame::Syn { digest: Vec::new() });
        bytes.extend([7, 7, 7]);
        assert_eq!(
            decode(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(CodecError::TrailingBytes(3))
        );
    }

    #[test]
    fn a_delta_head_never_takes_more_than_the_room_reserved_for_it() {
        let origin = Origin::new("n".repeat(128), u64::MAX);
        let mut head = Vec::new();
        let widest = OriginDelta {
            origin: origin.clone(),
            from: MAX_VERSION,
            to: MAX_VERSION,
            entries: Vec::new(),
        };
        put_delta_head(&mut head, &widest);
        // The entry count (0 here) at its widest: one entry per minimal entry's bytes.
        head.pop();
        head.extend(varint_bytes((MAX_PAYLOAD_LIMIT / MIN_ENTRY_LEN) as u64));
        let reserved = delta_head_len(&origin);
        assert!(head.len() <= reserved, "{} > {reserved}", head.len());
        assert!(
            reserved <= head.len() + 12,
            "{reserved} reserves far too much"
        );
    }

    fn varint_bytes(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(v, &mut out);
        out
    }

    #[test]
    fn a_tenth_varint_byte_may_carry_only_the_top_bit() {
        let decode = |last: u8| {
            let mut bytes = vec![0x80; 9];
            bytes.push(last);
            Decoder::new(&bytes).varint()
        };
        assert_eq!(decode(0x00), Ok(0), "a long zero is still zero");
        assert_eq!(decode(0x01), Ok(1 << 63));
        assert_eq!(decode(0x02), Err(CodecError::VarintOverflow));
        assert_eq!(decode(0x7f), Err(CodecError::VarintOverflow));
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(Decoder::new(&buf).varint(), Ok(v));
        }
    }
}

//! Gossip connections under the keyring: the keyed handshake on both ends of a TCP
//! connection, and frames sealed and opened on it (`crate::keyring::session` holds the
//! cryptography; this module moves its bytes).
//!
//! A sealed frame keeps the plaintext frame's 10-byte header — magic, version, type and
//! a length that counts the 16-byte tag — authenticated as associated data, then the
//! encrypted payload and the tag.

use crate::codec::{self, CodecError, Frame, FrameType, RawFrame, ReadError, HEADER_LEN};
use crate::keyring::session::{
    self, ClientHello, Opener, Sealer, ServerHello, SessionError, CLIENT_HELLO_HEAD,
    SERVER_HELLO_LEN, TAG_LEN,
};
use crate::keyring::Keyring;
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How an inbound connection opens.
pub enum Opening {
    /// A plaintext frame header: the connection's first frame follows.
    Plain([u8; HEADER_LEN]),
    /// A keyed handshake.
    Keyed(ClientHello),
}

/// Why an inbound connection's opening was refused.
pub enum OpeningError {
    Io(io::Error),
    /// Neither a frame header nor a keyed hello.
    Codec(CodecError),
    Session(SessionError),
}

/// Reads the first bytes of an inbound connection: a plaintext frame header or a whole
/// keyed hello (whose size is checked before it is read).
pub fn read_opening(r: &mut impl Read) -> Result<Opening, OpeningError> {
    let mut head = [0u8; CLIENT_HELLO_HEAD];
    r.read_exact(&mut head[..4]).map_err(OpeningError::Io)?;
    if head[..4] == session::SESSION_MAGIC {
        r.read_exact(&mut head[4..]).map_err(OpeningError::Io)?;
        let rest = ClientHello::rest_len(&head).map_err(OpeningError::Session)?;
        let mut bytes = vec![0u8; CLIENT_HELLO_HEAD + rest];
        bytes[..CLIENT_HELLO_HEAD].copy_from_slice(&head);
        r.read_exact(&mut bytes[CLIENT_HELLO_HEAD..])
            .map_err(OpeningError::Io)?;
        let hello = ClientHello::decode(&bytes).map_err(OpeningError::Session)?;
        return Ok(Opening::Keyed(hello));
    }
    if head[..4] != codec::MAGIC {
        return Err(OpeningError::Codec(CodecError::BadMagic));
    }
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&head[..4]);
    r.read_exact(&mut header[4..]).map_err(OpeningError::Io)?;
    Ok(Opening::Plain(header))
}

/// Reads from a connection, failing once `deadline` passes (its opening, a handshake): each read waits at most
/// the time left (a socket's read timeout bounds one read, so a peer sending a byte now
/// and then would otherwise never time out). With no deadline set, reads wait as the
/// socket's own timeout says.
pub struct Deadlined<'a> {
    pub stream: &'a TcpStream,
    pub deadline: &'a Cell<Option<Instant>>,
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(until) = self.deadline.get() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no hello in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// Answers a keyed hello on `stream`; the opener reads the frames that follow.
pub fn answer_hello(
    stream: &TcpStream,
    keyring: &Keyring,
    hello: &ClientHello,
) -> Result<Opener, SessionError> {
    let (answer, opener) = session::accept(keyring, hello)?;
    (&*stream)
        .write_all(&answer.encode())
        .map_err(|_| SessionError::BadConfirmation)?;
    Ok(opener)
}

/// Why a keyed handshake on an outbound connection failed.
pub enum HandshakeError {
    /// The peer closed or answered nothing in time: it holds none of our keys, refuses
    /// keyed connections, or is a node without a keyring.
    Refused(String),
    /// The peer answered but could not prove it holds the key: an impostor.
    Confirmation,
    Local(SessionError),
}

/// Runs the keyed handshake on a new outbound connection; the answer must come within
/// `timeout` (as a whole: a peer trickling it is cut off), after which the socket's
/// read timeout is `timeout` again.
pub fn handshake(
    stream: &mut TcpStream,
    keyring: &Keyring,
    timeout: Duration,
) -> Result<Sealer, HandshakeError> {
    let (hello, pending) = session::connect(keyring).map_err(HandshakeError::Local)?;
    stream
        .write_all(&hello.encode())
        .map_err(|e| HandshakeError::Refused(format!("sending the keyed hello: {e}")))?;
    let mut answer = [0u8; SERVER_HELLO_LEN];
    let deadline = Cell::new(Some(Instant::now() + timeout));
    let mut reader = Deadlined {
        stream,
        deadline: &deadline,
    };
    let read = reader.read_exact(&mut answer);
    let _ = stream.set_read_timeout(Some(timeout));
    read.map_err(|e| HandshakeError::Refused(format!("no answer to the keyed hello: {e}")))?;
    pending
        .finish(&ServerHello::decode(&answer))
        .map_err(|_| HandshakeError::Confirmation)
}

/// Appends `frame` sealed by `sealer`.
pub fn encode_sealed(
    frame: &Frame,
    sealer: &mut Sealer,
    out: &mut Vec<u8>,
) -> Result<(), SessionError> {
    let start = out.len();
    codec::encode_into(frame, out);
    let sealed_len = out.len() - start - HEADER_LEN + TAG_LEN;
    let len = u32::try_from(sealed_len).map_err(|_| SessionError::Exhausted)?;
    out[start + 6..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    let (header, payload) = out[start..].split_at_mut(HEADER_LEN);
    let tag = sealer.seal(header, payload)?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Why a sealed frame could not be read.
pub enum SealedReadError {
    Read(ReadError),
    Open(SessionError),
}

/// Reads one sealed frame, checking its length against `max_payload` (plus the tag)
/// before allocating, and opens it; the payload is decoded only once authentic.
pub fn read_sealed(
    r: &mut impl Read,
    max_payload: usize,
    opener: &mut Opener,
) -> Result<RawFrame, SealedReadError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)
        .map_err(|e| SealedReadError::Read(ReadError::Io(e)))?;
    let (kind, len) = codec::parse_header(&header, max_payload.saturating_add(TAG_LEN))
        .map_err(|e| SealedReadError::Read(ReadError::Codec(e)))?;
    let mut sealed = vec![0u8; len];
    r.read_exact(&mut sealed)
        .map_err(|e| SealedReadError::Read(ReadError::Io(e)))?;
    let plain = opener
        .open(&header, &mut sealed)
        .map_err(SealedReadError::Open)?;
    sealed.truncate(plain);
    Ok(RawFrame {
        kind,
        payload: sealed,
    })
}

/// Reads the rest of a plaintext frame whose header was read already.
pub fn read_plain_after(
    header: [u8; HEADER_LEN],
    r: &mut impl Read,
    max_payload: usize,
) -> Result<Frame, ReadError> {
    let mut chained = (&header[..]).chain(r);
    codec::read_frame(&mut chained, max_payload)
}

/// Whether a frame of this type may travel only on keyed connections.
pub fn keyed_only(kind: FrameType) -> bool {
    kind == FrameType::Keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{Key, Keyring};
    use crate::member::NodeName;

    /// A peer that answers the keyed hello a byte every 100 ms, each within the read
    /// timeout, is cut off once the whole answer has taken longer than it.
    #[test]
    fn an_answer_trickled_past_the_timeout_refuses_the_handshake() {
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = peer.local_addr().unwrap();
        let trickler = std::thread::spawn(move || {
            let (mut conn, _) = peer.accept().unwrap();
            for _ in 0..SERVER_HELLO_LEN {
                std::thread::sleep(Duration::from_millis(100));
                if conn.write_all(&[0]).is_err() {
                    return;
                }
            }
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        let timeout = Duration::from_millis(400);
        stream.set_read_timeout(Some(timeout)).unwrap();
        let ring = Keyring::new(Key::generate().unwrap());
        let started = Instant::now();
        let outcome = handshake(&mut stream, &ring, timeout);
        let took = started.elapsed();
        assert!(matches!(outcome, Err(HandshakeError::Refused(_))));
        // The whole answer would take SERVER_HELLO_LEN / 10 seconds.
        assert!(
            took < Duration::from_millis(100) * SERVER_HELLO_LEN as u32 / 2,
            "{took:?}"
        );
        assert_eq!(stream.read_timeout().unwrap(), Some(timeout), "restored");
        drop(stream);
        trickler.join().unwrap();
    }

    #[test]
    fn a_sealed_frame_reads_back_and_costs_a_tag() {
        let ring = Keyring::new(Key::generate().unwrap());
        let (hello, pending) = session::connect(&ring).unwrap();
        let (answer, mut opener) = session::accept(&ring, &hello).unwrap();
        let mut sealer = pending.finish(&answer).unwrap();
        let frame = Frame::Hello {
            name: NodeName::new("a").unwrap(),
            gossip_addr: "127.0.0.1:1".into(),
            http_addr: "127.0.0.1:2".into(),
        };
        let mut out = Vec::new();
        encode_sealed(&frame, &mut sealer, &mut out).unwrap();
        encode_sealed(&frame, &mut sealer, &mut out).unwrap();
        assert_eq!(out.len(), 2 * (codec::encoded_len(&frame) + TAG_LEN));
        let mut input = &out[..];
        for _ in 0..2 {
            let raw = read_sealed(&mut input, 1024, &mut opener)
                .ok()
                .expect("opens");
            assert_eq!(raw.decode().unwrap(), frame);
        }
        // The same bytes again: the frame numbers moved on.
        let mut again = &out[..];
        assert!(matches!(
            read_sealed(&mut again, 1024, &mut opener),
            Err(SealedReadError::Open(SessionError::BadFrame))
        ));
    }

    #[test]
    fn an_opening_is_a_frame_header_a_keyed_hello_or_refused() {
        let ring = Keyring::new(Key::generate().unwrap());
        let (hello, _) = session::connect(&ring).unwrap();
        let bytes = hello.encode();
        assert!(matches!(
            read_opening(&mut &bytes[..]),
            Ok(Opening::Keyed(h)) if h == hello
        ));
        let plain = codec::encode(&Frame::Syn { digest: vec![] });
        let Ok(Opening::Plain(header)) = read_opening(&mut &plain[..]) else {
            panic!("a plaintext frame");
        };
        assert_eq!(
            read_plain_after(header, &mut &plain[HEADER_LEN..], 1024).ok(),
            Some(Frame::Syn { digest: vec![] })
        );
        assert!(matches!(
            read_opening(&mut &b"HTTP/1.1"[..]),
            Err(OpeningError::Codec(CodecError::BadMagic))
        ));
        assert!(matches!(
            read_opening(&mut &b"GCTK\x01\x7f"[..]),
            Err(OpeningError::Session(SessionError::BadKeyCount(0x7f)))
        ));
    }
}

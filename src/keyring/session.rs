//! Keyed sessions on the reliable lane (TCP).
//!
//! Gossip connections carry frames one way: the connecting side sends, the accepting
//! side reads. The handshake, before any frame:
//! 1. the connecting side sends a [`ClientHello`]: magic `GCTK`, version, the ids of the
//!    keys it holds (its primary first) and 16 random bytes;
//! 2. the accepting side picks the first of those keys it holds and answers a
//!    [`ServerHello`]: that key's id, 16 random bytes of its own and a confirmation tag
//!    proving it holds the key; if it holds none of them it closes the connection.
//!
//! Both sides then derive this connection's keys with HKDF-SHA256 from the chosen keyring
//! key, salted with both random values, the whole client hello and the chosen id bound
//! into the derivation (so an attacker who edits the offered list only makes the
//! confirmation fail): one key seals the frames the connecting side sends, the other the
//! confirmation. Frames are sealed with ChaCha20-Poly1305, their nonce being their number
//! on the connection (never sent), their header authenticated as associated data: a frame
//! costs 16 bytes. A frame replayed on another connection fails (other keys), and again on
//! the same one fails (another number), as does a frame dropped, reordered or cut. The
//! accepting side learns that the other side holds the key from its first frame, which
//! must open: until then nothing it sent is believed.

use super::{Key, KeyId, Keyring, MAX_KEYS};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;

/// The first bytes of a keyed connection; a node without a keyring reads them as a frame
/// with a bad magic and closes.
pub const SESSION_MAGIC: [u8; 4] = *b"GCTK";
pub const SESSION_VERSION: u8 = 1;
const RANDOM_LEN: usize = 16;
/// Bytes of a [`ClientHello`] before its key ids: magic, version, key count.
pub const CLIENT_HELLO_HEAD: usize = 4 + 1 + 1;
/// Bytes of a [`ServerHello`].
pub const SERVER_HELLO_LEN: usize = 4 + RANDOM_LEN + TAG_LEN;
/// Bytes a sealed frame gains.
pub const TAG_LEN: usize = 16;

const KDF_INFO: &[u8] = b"gctr session v1";
const CONFIRM_AAD: &[u8] = b"gctr session confirm";

/// Why a handshake or a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// Not a keyed hello (a plaintext peer, or garbage).
    NotKeyed,
    UnsupportedVersion(u8),
    /// A hello offering no key, or more than a keyring holds.
    BadKeyCount(u8),
    /// The peer offered only keys this node does not hold.
    UnknownKey(Vec<KeyId>),
    /// The peer chose a key that was not offered, or could not prove it holds it.
    BadConfirmation,
    /// A frame failed to open: forged, replayed, reordered or cut.
    BadFrame,
    /// The connection sealed 2^64 frames; it must be replaced.
    Exhausted,
    Random(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NotKeyed => f.write_str("not a keyed connection"),
            SessionError::UnsupportedVersion(v) => write!(f, "unsupported session version {v}"),
            SessionError::BadKeyCount(n) => write!(f, "a hello offering {n} keys"),
            SessionError::UnknownKey(ids) => {
                let ids: Vec<String> = ids.iter().map(KeyId::to_string).collect();
                write!(f, "offered key(s) {}, none installed here", ids.join(", "))
            }
            SessionError::BadConfirmation => f.write_str("the peer did not prove it holds the key"),
            SessionError::BadFrame => f.write_str("a frame failed authentication"),
            SessionError::Exhausted => f.write_str("the session used up its nonces"),
            SessionError::Random(e) => write!(f, "no random bytes: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// The connecting side's opening message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The keys the connecting side holds, the one it prefers first.
    pub key_ids: Vec<KeyId>,
    random: [u8; RANDOM_LEN],
}

/// The accepting side's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello {
    pub key_id: KeyId,
    random: [u8; RANDOM_LEN],
    confirm: [u8; TAG_LEN],
}

impl ClientHello {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLIENT_HELLO_HEAD + 4 * self.key_ids.len() + RANDOM_LEN);
        out.extend_from_slice(&SESSION_MAGIC);
        out.push(SESSION_VERSION);
        out.push(self.key_ids.len() as u8);
        for id in &self.key_ids {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&self.random);
        out
    }

    /// Checks a hello's first [`CLIENT_HELLO_HEAD`] bytes and returns how many bytes
    /// follow, so a reader never waits for more than a hello can hold.
    pub fn rest_len(head: &[u8; CLIENT_HELLO_HEAD]) -> Result<usize, SessionError> {
        if head[..4] != SESSION_MAGIC {
            return Err(SessionError::NotKeyed);
        }
        if head[4] != SESSION_VERSION {
            return Err(SessionError::UnsupportedVersion(head[4]));
        }
        let count = head[5];
        if count == 0 || usize::from(count) > MAX_KEYS {
            return Err(SessionError::BadKeyCount(count));
        }
        Ok(4 * usize::from(count) + RANDOM_LEN)
    }

    /// Decodes a whole hello: its head and the [`ClientHello::rest_len`] bytes after it.
    pub fn decode(bytes: &[u8]) -> Result<ClientHello, SessionError> {
        let head: &[u8; CLIENT_HELLO_HEAD] = bytes
            .get(..CLIENT_HELLO_HEAD)
            .and_then(|h| h.try_into().ok())
            .ok_or(SessionError::NotKeyed)?;
        let rest = &bytes[CLIENT_HELLO_HEAD..];
        if rest.len() != ClientHello::rest_len(head)? {
            return Err(SessionError::NotKeyed);
        }
        let (ids, random) = rest.split_at(rest.len() - RANDOM_LEN);
        let key_ids = ids
            .chunks_exact(4)
            .map(|c| KeyId([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut r = [0u8; RANDOM_LEN];
        r.copy_from_slice(random);
        Ok(ClientHello { key_ids, random: r })
    }
}

impl ServerHello {
    pub fn encode(&self) -> [u8; SERVER_HELLO_LEN] {
        let mut out = [0u8; SERVER_HELLO_LEN];
        out[..4].copy_from_slice(&self.key_id.0);
        out[4..4 + RANDOM_LEN].copy_from_slice(&self.random);
        out[4 + RANDOM_LEN..].copy_from_slice(&self.confirm);
        out
    }

    pub fn decode(bytes: &[u8; SERVER_HELLO_LEN]) -> ServerHello {
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(&bytes[4..4 + RANDOM_LEN]);
        let mut confirm = [0u8; TAG_LEN];
        confirm.copy_from_slice(&bytes[4 + RANDOM_LEN..]);
        ServerHello {
            key_id: KeyId([bytes[0], bytes[1], bytes[2], bytes[3]]),
            random,
            confirm,
        }
    }
}

/// The connecting side between its hello and the answer.
pub struct PendingClient {
    hello: ClientHello,
    keys: Keyring,
}

/// Starts a handshake offering every key of `keyring`, its primary first.
pub fn connect(keyring: &Keyring) -> Result<(ClientHello, PendingClient), SessionError> {
    let hello = ClientHello {
        key_ids: keyring.ids(),
        random: random()?,
    };
    let pending = PendingClient {
        hello: hello.clone(),
        keys: keyring.clone(),
    };
    Ok((hello, pending))
}

impl PendingClient {
    /// Checks the answer and returns what seals this side's frames.
    pub fn finish(self, answer: &ServerHello) -> Result<Sealer, SessionError> {
        if !self.hello.key_ids.contains(&answer.key_id) {
            return Err(SessionError::BadConfirmation);
        }
        let key = self
            .keys
            .find(answer.key_id)
            .ok_or(SessionError::BadConfirmation)?;
        let (data, confirm) = derive(key, &self.hello, &answer.random);
        let tag = Tag::from_slice(&answer.confirm);
        confirm
            .decrypt_in_place_detached(&nonce(0), CONFIRM_AAD, &mut [], tag)
            .map_err(|_| SessionError::BadConfirmation)?;
        Ok(Sealer {
            cipher: data,
            key_id: answer.key_id,
            next: 0,
        })
    }
}

/// Answers a client's hello: the answer to send and what opens the frames that follow.
pub fn accept(
    keyring: &Keyring,
    hello: &ClientHello,
) -> Result<(ServerHello, Opener), SessionError> {
    let key = hello
        .key_ids
        .iter()
        .find_map(|id| keyring.find(*id))
        .ok_or_else(|| SessionError::UnknownKey(hello.key_ids.clone()))?;
    let mine = random()?;
    let (data, confirm) = derive(key, hello, &mine);
    let tag = confirm
        .encrypt_in_place_detached(&nonce(0), CONFIRM_AAD, &mut [])
        .map_err(|_| SessionError::BadConfirmation)?;
    let mut answer = ServerHello {
        key_id: key.id(),
        random: mine,
        confirm: [0u8; TAG_LEN],
    };
    answer.confirm.copy_from_slice(&tag);
    let opener = Opener {
        cipher: data,
        key_id: key.id(),
        next: 0,
    };
    Ok((answer, opener))
}

/// Seals the frames one side sends on one connection, in order.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    key_id: KeyId,
    next: u64,
}

impl Sealer {
    /// Encrypts `payload` in place and returns its tag; `header` is authenticated too.
    pub fn seal(
        &mut self,
        header: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SessionError> {
        let n = self.next;
        self.next = n.checked_add(1).ok_or(SessionError::Exhausted)?;
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(n), header, payload)
            .map_err(|_| SessionError::Exhausted)?;
        Ok(tag.into())
    }

    /// The keyring key this session was derived from.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

/// Opens the frames the other side sends on one connection, in order.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    key_id: KeyId,
    next: u64,
}

impl Opener {
    /// Checks and decrypts `sealed` (ciphertext then tag) in place; returns the length
    /// of the plaintext, which is left at its start.
    pub fn open(&mut self, header: &[u8], sealed: &mut [u8]) -> Result<usize, SessionError> {
        let body = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(SessionError::BadFrame)?;
        let (text, tag) = sealed.split_at_mut(body);
        let tag = Tag::clone_from_slice(tag);
        let n = self.next;
        self.cipher
            .decrypt_in_place_detached(&nonce(n), header, text, &tag)
            .map_err(|_| SessionError::BadFrame)?;
        self.next = n.checked_add(1).ok_or(SessionError::Exhausted)?;
        Ok(body)
    }

    /// The keyring key this session was derived from.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

/// This connection's keys: the one sealing the connecting side's frames, and the one
/// sealing the confirmation. The whole client hello and the chosen key's id are bound in.
fn derive(
    key: &Key,
    hello: &ClientHello,
    server: &[u8; RANDOM_LEN],
) -> (ChaCha20Poly1305, ChaCha20Poly1305) {
    let salt = [&hello.random[..], &server[..]].concat();
    let kdf = Hkdf::<Sha256>::new(Some(&salt), key.bytes());
    let info = [KDF_INFO, &hello.encode(), &key.id().0].concat();
    let mut okm = [0u8; 64];
    kdf.expand(&info, &mut okm)
        .expect("64 bytes is a valid HKDF-SHA256 output length");
    let data = ChaCha20Poly1305::new_from_slice(&okm[..32]).expect("32-byte key");
    let confirm = ChaCha20Poly1305::new_from_slice(&okm[32..]).expect("32-byte key");
    (data, confirm)
}

fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::clone_from_slice(&bytes)
}

fn random() -> Result<[u8; RANDOM_LEN], SessionError> {
    let mut bytes = [0u8; RANDOM_LEN];
    getrandom::getrandom(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KEY_LEN;

    fn key(b: u8) -> Key {
        Key([b; KEY_LEN])
    }

    fn keyring(b: u8) -> Keyring {
        Keyring::new(key(b))
    }

    /// A full handshake between two keyrings over encoded bytes.
    fn handshake(client: &Keyring, server: &Keyring) -> Result<(Sealer, Opener), SessionError> {
        let (hello, pending) = connect(client)?;
        let hello = ClientHello::decode(&hello.encode())?;
        let (answer, opener) = accept(server, &hello)?;
        let sealer = pending.finish(&ServerHello::decode(&answer.encode()))?;
        Ok((sealer, opener))
    }

    fn sealed(sealer: &mut Sealer, text: &[u8]) -> Vec<u8> {
        let mut buf = text.to_vec();
        let tag = sealer.seal(b"hdr", &mut buf).unwrap();
        buf.extend_from_slice(&tag);
        buf
    }

    fn open(opener: &mut Opener, header: &[u8], frame: &[u8]) -> Result<Vec<u8>, SessionError> {
        let mut buf = frame.to_vec();
        let len = opener.open(header, &mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }

    #[test]
    fn frames_open_in_order_and_cost_a_tag() {
        let ring = keyring(1);
        let (mut sealer, mut opener) = handshake(&ring, &ring).unwrap();
        for text in [&b"one"[..], b"", b"three"] {
            let buf = sealed(&mut sealer, text);
            assert_eq!(buf.len(), text.len() + TAG_LEN);
            assert_eq!(open(&mut opener, b"hdr", &buf).unwrap(), text);
        }
    }

    #[test]
    fn replayed_reordered_forged_or_cut_frames_fail() {
        let ring = keyring(1);
        let (mut sealer, mut opener) = handshake(&ring, &ring).unwrap();
        let first = sealed(&mut sealer, b"first");
        let second = sealed(&mut sealer, b"second");
        assert_eq!(
            open(&mut opener, b"hdr", &second),
            Err(SessionError::BadFrame)
        );
        open(&mut opener, b"hdr", &first).unwrap();
        assert_eq!(
            open(&mut opener, b"hdr", &first),
            Err(SessionError::BadFrame)
        );
        let mut flipped = second.clone();
        flipped[0] ^= 1;
        assert_eq!(
            open(&mut opener, b"hdr", &flipped),
            Err(SessionError::BadFrame)
        );
        assert_eq!(
            open(&mut opener, b"HDR", &second),
            Err(SessionError::BadFrame)
        );
        assert_eq!(
            open(&mut opener, b"hdr", &[0; 5]),
            Err(SessionError::BadFrame)
        );
        assert_eq!(open(&mut opener, b"hdr", &second).unwrap(), b"second");
    }

    #[test]
    fn a_frame_from_one_connection_fails_on_another() {
        let ring = keyring(1);
        let (mut sealer, _) = handshake(&ring, &ring).unwrap();
        let (_, mut other) = handshake(&ring, &ring).unwrap();
        let frame = sealed(&mut sealer, b"captured");
        assert_eq!(
            open(&mut other, b"hdr", &frame),
            Err(SessionError::BadFrame)
        );
    }

    #[test]
    fn a_replayed_hello_gets_other_session_keys() {
        let ring = keyring(1);
        let (hello, pending) = connect(&ring).unwrap();
        let (answer, _) = accept(&ring, &hello).unwrap();
        let mut sealer = pending.finish(&answer).unwrap();
        let frame = sealed(&mut sealer, b"captured");
        // The attacker replays the hello and the frame: the server's random differs.
        let (_, mut replayed) = accept(&ring, &hello).unwrap();
        assert_eq!(
            open(&mut replayed, b"hdr", &frame),
            Err(SessionError::BadFrame)
        );
    }

    #[test]
    fn a_node_without_the_key_is_refused_and_cannot_pose_as_one() {
        let (a, b) = (keyring(1), keyring(2));
        let (hello, pending) = connect(&a).unwrap();
        assert_eq!(
            accept(&b, &hello).err(),
            Some(SessionError::UnknownKey(vec![a.primary().id()]))
        );
        // An impostor answering without the key fails the confirmation.
        let forged = ServerHello {
            key_id: a.primary().id(),
            random: [9; RANDOM_LEN],
            confirm: [0; TAG_LEN],
        };
        assert_eq!(
            pending.finish(&forged).err(),
            Some(SessionError::BadConfirmation)
        );
        let mut plaintext = [0u8; CLIENT_HELLO_HEAD];
        plaintext[..4].copy_from_slice(b"GCTR");
        assert_eq!(
            ClientHello::rest_len(&plaintext),
            Err(SessionError::NotKeyed)
        );
        let mut too_many = *b"GCTK\x01\x00";
        assert_eq!(
            ClientHello::rest_len(&too_many),
            Err(SessionError::BadKeyCount(0))
        );
        too_many[5] = MAX_KEYS as u8 + 1;
        assert!(ClientHello::rest_len(&too_many).is_err());
    }

    #[test]
    fn the_first_offered_key_the_server_holds_is_used() {
        let mut server = Keyring::new(key(1));
        server.install(key(2)).unwrap();
        let mut client = Keyring::new(key(3));
        client.install(key(2)).unwrap();
        client.install(key(1)).unwrap();
        let (mut sealer, mut opener) = handshake(&client, &server).unwrap();
        assert_eq!(sealer.key_id(), key(2).id());
        assert_eq!(opener.key_id(), key(2).id());
        let frame = sealed(&mut sealer, b"rotated");
        assert_eq!(open(&mut opener, b"hdr", &frame).unwrap(), b"rotated");
    }

    #[test]
    fn an_edited_offer_fails_the_confirmation() {
        let mut client = Keyring::new(key(1));
        client.install(key(2)).unwrap();
        let (hello, pending) = connect(&client).unwrap();
        // A man in the middle strips the preferred key to force the older one.
        let mut edited = hello.clone();
        edited.key_ids.remove(0);
        let (answer, _) = accept(&client, &edited).unwrap();
        assert_eq!(
            pending.finish(&answer).err(),
            Some(SessionError::BadConfirmation)
        );
    }
}

//! Keyed sessions on the reliable lane (TCP).
//!
//! The handshake, before any frame:
//! 1. the connecting side sends [`ClientHello`]: magic `GCTK`, version, the id of the key
//!    it seals with (its primary), and 16 random bytes;
//! 2. the accepting side, if it holds that key, answers [`ServerHello`]: 16 random bytes of
//!    its own and a confirmation tag that proves it holds the key too; otherwise it closes
//!    the connection.
//!
//! Both sides then derive this connection's keys with HKDF-SHA256 from the keyring key,
//! salted with both random values: one key seals the frames the connecting side sends,
//! the other the confirmation. Frames are sealed with ChaCha20-Poly1305, their nonce
//! being their number on the connection (never sent), their header authenticated as
//! associated data: a frame costs 16 bytes. A frame replayed on another connection
//! fails (other keys), and again on the same one fails (another number), as does a
//! frame dropped, reordered or cut.

use super::{Key, KeyId, Keyring};
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
/// Bytes of a [`ClientHello`].
pub const CLIENT_HELLO_LEN: usize = 4 + 1 + 4 + RANDOM_LEN;
/// Bytes of a [`ServerHello`].
pub const SERVER_HELLO_LEN: usize = RANDOM_LEN + TAG_LEN;
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
    /// The peer sealed with a key this node does not hold.
    UnknownKey(KeyId),
    /// The peer could not prove it holds the key.
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
            SessionError::UnknownKey(id) => {
                write!(f, "sealed with key {id}, which is not installed")
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello {
    pub key_id: KeyId,
    random: [u8; RANDOM_LEN],
}

/// The accepting side's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello {
    random: [u8; RANDOM_LEN],
    confirm: [u8; TAG_LEN],
}

impl ClientHello {
    pub fn encode(&self) -> [u8; CLIENT_HELLO_LEN] {
        let mut out = [0u8; CLIENT_HELLO_LEN];
        out[..4].copy_from_slice(&SESSION_MAGIC);
        out[4] = SESSION_VERSION;
        out[5..9].copy_from_slice(&self.key_id.0);
        out[9..].copy_from_slice(&self.random);
        out
    }

    pub fn decode(bytes: &[u8; CLIENT_HELLO_LEN]) -> Result<ClientHello, SessionError> {
        if bytes[..4] != SESSION_MAGIC {
            return Err(SessionError::NotKeyed);
        }
        if bytes[4] != SESSION_VERSION {
            return Err(SessionError::UnsupportedVersion(bytes[4]));
        }
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&bytes[5..9]);
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(&bytes[9..]);
        Ok(ClientHello {
            key_id: KeyId(key_id),
            random,
        })
    }
}

impl ServerHello {
    pub fn encode(&self) -> [u8; SERVER_HELLO_LEN] {
        let mut out = [0u8; SERVER_HELLO_LEN];
        out[..RANDOM_LEN].copy_from_slice(&self.random);
        out[RANDOM_LEN..].copy_from_slice(&self.confirm);
        out
    }

    pub fn decode(bytes: &[u8; SERVER_HELLO_LEN]) -> ServerHello {
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(&bytes[..RANDOM_LEN]);
        let mut confirm = [0u8; TAG_LEN];
        confirm.copy_from_slice(&bytes[RANDOM_LEN..]);
        ServerHello { random, confirm }
    }
}

/// The connecting side between its hello and the answer.
pub struct PendingClient {
    hello: ClientHello,
    key: Key,
}

/// Starts a handshake sealed with the keyring's primary key.
pub fn connect(keyring: &Keyring) -> Result<(ClientHello, PendingClient), SessionError> {
    let key = keyring.primary().clone();
    let hello = ClientHello {
        key_id: key.id(),
        random: random()?,
    };
    Ok((hello, PendingClient { hello, key }))
}

impl PendingClient {
    /// Checks the answer and returns what seals this side's frames.
    pub fn finish(self, answer: &ServerHello) -> Result<Sealer, SessionError> {
        let (data, confirm) = derive(&self.key, &self.hello.random, &answer.random);
        let tag = Tag::from_slice(&answer.confirm);
        confirm
            .decrypt_in_place_detached(&nonce(0), CONFIRM_AAD, &mut [], tag)
            .map_err(|_| SessionError::BadConfirmation)?;
        Ok(Sealer {
            cipher: data,
            next: 0,
        })
    }
}

/// Answers a client's hello: the answer to send and what opens the frames that follow.
pub fn accept(
    keyring: &Keyring,
    hello: &ClientHello,
) -> Result<(ServerHello, Opener), SessionError> {
    let key = keyring
        .find(hello.key_id)
        .ok_or(SessionError::UnknownKey(hello.key_id))?;
    let mine = random()?;
    let (data, confirm) = derive(key, &hello.random, &mine);
    let tag = confirm
        .encrypt_in_place_detached(&nonce(0), CONFIRM_AAD, &mut [])
        .map_err(|_| SessionError::BadConfirmation)?;
    let mut answer = ServerHello {
        random: mine,
        confirm: [0u8; TAG_LEN],
    };
    answer.confirm.copy_from_slice(&tag);
    Ok((
        answer,
        Opener {
            cipher: data,
            next: 0,
        },
    ))
}

/// Seals the frames one side sends on one connection, in order.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    next: u64,
}

impl Sealer {
    /// Encrypts `payload` in place and appends its tag; `header` is authenticated too.
    pub fn seal(&mut self, header: &[u8], payload: &mut Vec<u8>) -> Result<(), SessionError> {
        let n = self.next;
        self.next = n.checked_add(1).ok_or(SessionError::Exhausted)?;
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce(n), header, payload)
            .map_err(|_| SessionError::Exhausted)?;
        payload.extend_from_slice(&tag);
        Ok(())
    }
}

/// Opens the frames the other side sends on one connection, in order.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    next: u64,
}

impl Opener {
    /// Checks and decrypts `sealed` in place, leaving the plaintext.
    pub fn open(&mut self, header: &[u8], sealed: &mut Vec<u8>) -> Result<(), SessionError> {
        let body = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(SessionError::BadFrame)?;
        let tag = Tag::clone_from_slice(&sealed[body..]);
        let n = self.next;
        self.cipher
            .decrypt_in_place_detached(&nonce(n), header, &mut sealed[..body], &tag)
            .map_err(|_| SessionError::BadFrame)?;
        sealed.truncate(body);
        self.next = n.checked_add(1).ok_or(SessionError::Exhausted)?;
        Ok(())
    }
}

/// This connection's keys: the one sealing the connecting side's frames, and the one
/// sealing the confirmation.
fn derive(
    key: &Key,
    client: &[u8; RANDOM_LEN],
    server: &[u8; RANDOM_LEN],
) -> (ChaCha20Poly1305, ChaCha20Poly1305) {
    let salt = [&client[..], &server[..]].concat();
    let kdf = Hkdf::<Sha256>::new(Some(&salt), key.bytes());
    let info = [KDF_INFO, &key.id().0].concat();
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

    fn keyring(b: u8) -> Keyring {
        Keyring::new(Key([b; super::super::KEY_LEN]))
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
        sealer.seal(b"hdr", &mut buf).unwrap();
        buf
    }

    #[test]
    fn frames_open_in_order_and_cost_a_tag() {
        let ring = keyring(1);
        let (mut sealer, mut opener) = handshake(&ring, &ring).unwrap();
        for text in [&b"one"[..], b"", b"three"] {
            let mut buf = sealed(&mut sealer, text);
            assert_eq!(buf.len(), text.len() + TAG_LEN);
            opener.open(b"hdr", &mut buf).unwrap();
            assert_eq!(buf, text);
        }
    }

    #[test]
    fn replayed_reordered_forged_or_cut_frames_fail() {
        let ring = keyring(1);
        let (mut sealer, mut opener) = handshake(&ring, &ring).unwrap();
        let first = sealed(&mut sealer, b"first");
        let second = sealed(&mut sealer, b"second");
        assert_eq!(
            opener.open(b"hdr", &mut second.clone()),
            Err(SessionError::BadFrame)
        );
        opener.open(b"hdr", &mut first.clone()).unwrap();
        assert_eq!(
            opener.open(b"hdr", &mut first.clone()),
            Err(SessionError::BadFrame)
        );
        let mut flipped = second.clone();
        flipped[0] ^= 1;
        assert_eq!(
            opener.open(b"hdr", &mut flipped),
            Err(SessionError::BadFrame)
        );
        assert_eq!(
            opener.open(b"HDR", &mut second.clone()),
            Err(SessionError::BadFrame)
        );
        assert_eq!(
            opener.open(b"hdr", &mut vec![0; 5]),
            Err(SessionError::BadFrame)
        );
        opener.open(b"hdr", &mut second.clone()).unwrap();
    }

    #[test]
    fn a_frame_from_one_connection_fails_on_another() {
        let ring = keyring(1);
        let (mut sealer, _) = handshake(&ring, &ring).unwrap();
        let (_, mut other) = handshake(&ring, &ring).unwrap();
        let frame = sealed(&mut sealer, b"captured");
        assert_eq!(
            other.open(b"hdr", &mut frame.clone()),
            Err(SessionError::BadFrame)
        );
    }

    #[test]
    fn a_node_without_the_key_is_refused_and_cannot_pose_as_one() {
        let (a, b) = (keyring(1), keyring(2));
        let (hello, pending) = connect(&a).unwrap();
        assert_eq!(
            accept(&b, &hello).err(),
            Some(SessionError::UnknownKey(a.primary().id()))
        );
        // An impostor answering without the key fails the confirmation.
        let forged = ServerHello {
            random: [9; RANDOM_LEN],
            confirm: [0; TAG_LEN],
        };
        assert_eq!(
            pending.finish(&forged).err(),
            Some(SessionError::BadConfirmation)
        );
        let mut plaintext = [0u8; CLIENT_HELLO_LEN];
        plaintext[..4].copy_from_slice(b"GCTR");
        assert_eq!(ClientHello::decode(&plaintext), Err(SessionError::NotKeyed));
    }

    #[test]
    fn any_installed_key_accepts_and_the_primary_seals() {
        let old = Key([1; super::super::KEY_LEN]);
        let new = Key([2; super::super::KEY_LEN]);
        let mut server = Keyring::new(old.clone());
        server.install(new.clone()).unwrap();
        let client = Keyring::new(new);
        let (mut sealer, mut opener) = handshake(&client, &server).unwrap();
        let mut frame = sealed(&mut sealer, b"rotated");
        opener.open(b"hdr", &mut frame).unwrap();
        assert_eq!(frame, b"rotated");
    }
}

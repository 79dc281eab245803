//! The gossip keyring: the shared keys every gossip frame is encrypted and authenticated
//! with, and the two ways frames are sealed.
//!
//! A key is 32 random bytes, written in base64 one a line in the keyring file; the first
//! key is the primary, which seals everything sent, while every installed key may open
//! what arrives (so a new key can be installed everywhere before it is put to use, and
//! an old one removed once nothing uses it). A key is named by its [`KeyId`], the first
//! four bytes of its SHA-256, which is safe to show and log.
//!
//! - `session`: the reliable lane (TCP). A connection starts with a two-message handshake
//!   that derives fresh keys for it from the keyring key and a random nonce from each
//!   side; frames then carry only a 16-byte tag, their nonces being their position on the
//!   connection. A frame replayed on another connection, or again on the same one,
//!   fails to open.
//! - `datagram`: the probe lane (UDP). Each datagram carries a one-byte key hint, a
//!   12-byte nonce (the sender's clock in microseconds and a random run id) and the tag:
//!   29 bytes. A receiver refuses datagrams older than [`datagram::MAX_AGE`] and any it
//!   has seen already (a window per sender run).
//!
//! The cipher is ChaCha20-Poly1305 and the key derivation HKDF-SHA256, from RustCrypto;
//! nothing here is hand-rolled but the framing around them.

pub mod cluster;
pub mod datagram;
pub mod session;
pub mod shared;
pub mod wire;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io;
use std::path::Path;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Most keys a keyring holds.
pub const MAX_KEYS: usize = 16;

/// One shared secret. Its `Debug` shows only its id.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

/// The public name of a key: the first four bytes of its SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl Key {
    /// A new key from the operating system's random source.
    pub fn generate() -> io::Result<Key> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::getrandom(&mut bytes).map_err(io::Error::other)?;
        Ok(Key(bytes))
    }

    /// A key written in base64.
    pub fn parse(text: &str) -> Result<Key, KeyringError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| KeyringError::BadKey(format!("not base64: {e}")))?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            KeyringError::BadKey(format!("{} bytes; a key is {KEY_LEN}", b.len()))
        })?;
        Ok(Key(bytes))
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    pub fn id(&self) -> KeyId {
        let digest = Sha256::digest(self.0);
        KeyId([digest[0], digest[1], digest[2], digest[3]])
    }

    fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id())
    }
}

impl KeyId {
    /// An id written as 8 hex digits, as [`KeyId`]'s `Display` writes it.
    pub fn parse(text: &str) -> Option<KeyId> {
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; 4];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyId(id))
    }

    /// The byte a datagram carries to say which key sealed it.
    pub fn hint(self) -> u8 {
        self.0[0]
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Writes `text` to `path` atomically: a temporary file readable by its owner only
/// (named after this process, so two nodes given one file never share it), fsynced,
/// renamed over it, then the directory fsynced.
pub fn write_private(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// Why a keyring or a key was refused. Nothing changes when one is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyringError {
    BadKey(String),
    /// A keyring file line that is not a key; the line number counts from 1.
    BadLine {
        line: usize,
        why: String,
    },
    Empty,
    TooMany,
    Duplicate(KeyId),
    Unknown(KeyId),
    /// The primary key cannot be removed; make another key primary first.
    RemovePrimary(KeyId),
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::BadKey(why) => write!(f, "bad key: {why}"),
            KeyringError::BadLine { line, why } => write!(f, "line {line}: {why}"),
            KeyringError::Empty => f.write_str("the keyring holds no key"),
            KeyringError::TooMany => write!(f, "a keyring holds at most {MAX_KEYS} keys"),
            KeyringError::Duplicate(id) => write!(f, "key {id} is installed already"),
            KeyringError::Unknown(id) => write!(f, "no key {id} is installed"),
            KeyringError::RemovePrimary(id) => write!(
                f,
                "key {id} is the primary key; make another key primary before removing it"
            ),
        }
    }
}

impl std::error::Error for KeyringError {}

/// The installed keys, the primary first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring of one key.
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            keys: vec![primary],
        }
    }

    /// Parses a keyring file: one base64 key a line, the primary first; blank lines and
    /// lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = Key::parse(line).map_err(|e| KeyringError::BadLine {
                line: i + 1,
                why: e.to_string(),
            })?;
            if keys.iter().any(|k| k.id() == key.id()) {
                return Err(KeyringError::Duplicate(key.id()));
            }
            keys.push(key);
            if keys.len() > MAX_KEYS {
                return Err(KeyringError::TooMany);
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// The file form [`Keyring::parse`] reads.
    pub fn to_text(&self) -> String {
        let mut text = String::from("# gctr keyring: the first key is the primary\n");
        for key in &self.keys {
            text.push_str(&key.to_base64());
            text.push('\n');
        }
        text
    }

    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every installed key, the primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Every installed key's id, the primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(Key::id).collect()
    }

    pub fn find(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// The keys whose id starts with `hint`.
    pub fn with_hint(&self, hint: u8) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.id().hint() == hint)
    }

    /// Installs `key` (not primary).
    pub fn install(&mut self, key: Key) -> Result<(), KeyringError> {
        if self.find(key.id()).is_some() {
            return Err(KeyringError::Duplicate(key.id()));
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyringError::TooMany);
        }
        self.keys.push(key);
        Ok(())
    }

    /// Makes the installed key `id` the primary.
    pub fn use_key(&mut self, id: KeyId) -> Result<(), KeyringError> {
        let at = self
            .keys
            .iter()
            .position(|k| k.id() == id)
            .ok_or(KeyringError::Unknown(id))?;
        let key = self.keys.remove(at);
        self.keys.insert(0, key);
        Ok(())
    }

    /// Removes the installed key `id`, which must not be the primary.
    pub fn remove(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if self.primary().id() == id {
            return Err(KeyringError::RemovePrimary(id));
        }
        let at = self
            .keys
            .iter()
            .position(|k| k.id() == id)
            .ok_or(KeyringError::Unknown(id))?;
        self.keys.remove(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key([b; KEY_LEN])
    }

    #[test]
    fn a_keyring_file_round_trips_and_its_first_key_is_primary() {
        let mut ring = Keyring::new(key(1));
        ring.install(key(2)).unwrap();
        let again = Keyring::parse(&ring.to_text()).unwrap();
        assert_eq!(again, ring);
        assert_eq!(again.primary(), &key(1));
        assert_eq!(again.ids(), vec![key(1).id(), key(2).id()]);
    }

    #[test]
    fn bad_files_are_refused_naming_the_line() {
        assert_eq!(Keyring::parse("\n# nothing\n"), Err(KeyringError::Empty));
        let short = BASE64.encode([0u8; 16]);
        assert!(matches!(
            Keyring::parse(&format!("# c\n{short}\n")),
            Err(KeyringError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            Keyring::parse("not base64!"),
            Err(KeyringError::BadLine { line: 1, .. })
        ));
        let k = key(3).to_base64();
        assert_eq!(
            Keyring::parse(&format!("{k}\n{k}\n")),
            Err(KeyringError::Duplicate(key(3).id()))
        );
    }

    #[test]
    fn install_use_remove_and_their_refusals() {
        let mut ring = Keyring::new(key(1));
        ring.install(key(2)).unwrap();
        assert_eq!(
            ring.install(key(2)),
            Err(KeyringError::Duplicate(key(2).id()))
        );
        assert_eq!(
            ring.remove(key(1).id()),
            Err(KeyringError::RemovePrimary(key(1).id()))
        );
        ring.use_key(key(2).id()).unwrap();
        assert_eq!(ring.primary(), &key(2));
        ring.remove(key(1).id()).unwrap();
        assert_eq!(ring.ids(), vec![key(2).id()]);
        assert_eq!(
            ring.use_key(key(9).id()),
            Err(KeyringError::Unknown(key(9).id()))
        );
    }

    #[test]
    fn generated_keys_differ_and_debug_shows_only_the_id() {
        let (a, b) = (Key::generate().unwrap(), Key::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), format!("Key({})", a.id()));
        assert_eq!(Key::parse(&a.to_base64()).unwrap(), a);
        assert_eq!(KeyId::parse(&a.id().to_string()), Some(a.id()));
        assert_eq!(KeyId::parse("0123456"), None);
        assert_eq!(KeyId::parse("0123456g"), None);
    }
}

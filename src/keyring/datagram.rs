//! Keyed datagrams on the probe lane (UDP).
//!
//! A sealed datagram is: a key hint (the first byte of the sealing key's id), a 12-byte
//! nonce — the sender's wall clock in microseconds (7 bytes, strictly rising within a
//! run; 2^56 microseconds last until the year 4254) and its run id (5 random bytes chosen
//! at start) — then the ChaCha20-Poly1305 ciphertext and its 16-byte tag: 29 bytes more
//! than the plaintext. The hint lets a receiver try only the keys it names. Every node
//! holding a key seals with it, so a nonce must never repeat across nodes: two runs would
//! need the same 40-bit run id and the same microsecond stamp at once.
//!
//! Replays are refused after authentication, so forged datagrams cannot disturb the
//! bookkeeping: a datagram whose clock is more than [`MAX_AGE`] behind the receiver's (or
//! as far ahead) is refused, and within that age each run keeps the clocks of its latest
//! [`WINDOW`] datagrams; one seen before, or older than all of them, is refused. A run
//! silent for longer than [`MAX_AGE`] is forgotten — anything it could still send is
//! stale by then. Clocks of nodes must agree within [`MAX_AGE`].

use super::{Key, Keyring};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

/// Bytes a sealed datagram adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
/// Oldest (and furthest ahead) a datagram's clock may be against the receiver's.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Datagrams remembered per sender run.
pub const WINDOW: usize = 256;
/// Sender runs remembered at once; more are refused until old ones go quiet.
pub const MAX_RUNS: usize = 4096;

const NONCE_LEN: usize = 12;
const STAMP_LEN: usize = 7;
const RUN_LEN: usize = NONCE_LEN - STAMP_LEN;
const MAX_STAMP: u64 = (1 << (8 * STAMP_LEN)) - 1;
const TAG_LEN: usize = 16;

/// Why a datagram was refused. Nothing is remembered of a refused datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatagramError {
    TooShort,
    /// No installed key opens it (a wrong key, a plaintext sender, or a forgery).
    NotAuthentic,
    /// Its clock is outside [`MAX_AGE`] of the receiver's.
    Stale,
    /// Seen already, or older than every datagram remembered of its run.
    Replayed,
    /// [`MAX_RUNS`] runs are active already.
    TooManyRuns,
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramError::TooShort => f.write_str("shorter than a sealed datagram"),
            DatagramError::NotAuthentic => f.write_str("no installed key opens it"),
            DatagramError::Stale => write!(
                f,
                "its clock is more than {}s from this node's",
                MAX_AGE.as_secs()
            ),
            DatagramError::Replayed => f.write_str("a replay"),
            DatagramError::TooManyRuns => f.write_str("too many senders at once"),
        }
    }
}

impl std::error::Error for DatagramError {}

/// Seals the datagrams one node sends.
pub struct DatagramSealer {
    run: [u8; RUN_LEN],
    last_micros: u64,
}

impl DatagramSealer {
    pub fn new() -> std::io::Result<DatagramSealer> {
        let mut run = [0u8; RUN_LEN];
        getrandom::getrandom(&mut run).map_err(std::io::Error::other)?;
        Ok(DatagramSealer {
            run,
            last_micros: 0,
        })
    }

    /// `plaintext` sealed with the keyring's primary key, stamped with `now_micros`
    /// (microseconds since the Unix epoch).
    pub fn seal(&mut self, keyring: &Keyring, now_micros: u64, plaintext: &[u8]) -> Vec<u8> {
        let stamp = now_micros
            .max(self.last_micros.saturating_add(1))
            .min(MAX_STAMP);
        self.last_micros = stamp;
        let key = keyring.primary();
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..STAMP_LEN].copy_from_slice(&stamp.to_be_bytes()[8 - STAMP_LEN..]);
        nonce[STAMP_LEN..].copy_from_slice(&self.run);
        let hint = key.id().hint();
        let mut body = plaintext.to_vec();
        let tag = cipher(key)
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[hint], &mut body)
            .expect("a datagram is far below ChaCha20-Poly1305's message limit");
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.push(hint);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        out
    }
}

/// Opens datagrams and refuses replays.
#[derive(Default)]
pub struct DatagramOpener {
    runs: HashMap<[u8; RUN_LEN], RunWindow>,
}

#[derive(Default)]
struct RunWindow {
    stamps: BTreeSet<u64>,
}

impl DatagramOpener {
    /// The plaintext of `datagram`, if an installed key opens it and it is neither stale
    /// nor a replay; `now_micros` is this node's clock.
    pub fn open(
        &mut self,
        keyring: &Keyring,
        now_micros: u64,
        datagram: &[u8],
    ) -> Result<Vec<u8>, DatagramError> {
        if datagram.len() < OVERHEAD {
            return Err(DatagramError::TooShort);
        }
        let hint = datagram[0];
        let nonce = Nonce::from_slice(&datagram[1..1 + NONCE_LEN]);
        let mut stamp_bytes = [0u8; 8];
        stamp_bytes[8 - STAMP_LEN..].copy_from_slice(&nonce[..STAMP_LEN]);
        let stamp = u64::from_be_bytes(stamp_bytes);
        let mut run = [0u8; RUN_LEN];
        run.copy_from_slice(&nonce[STAMP_LEN..]);
        let max_age = MAX_AGE.as_micros() as u64;
        if stamp.saturating_add(max_age) < now_micros || stamp > now_micros.saturating_add(max_age)
        {
            return Err(DatagramError::Stale);
        }
        let body_end = datagram.len() - TAG_LEN;
        let tag = Tag::from_slice(&datagram[body_end..]);
        let plaintext = keyring
            .with_hint(hint)
            .find_map(|key| {
                let mut body = datagram[1 + NONCE_LEN..body_end].to_vec();
                cipher(key)
                    .decrypt_in_place_detached(nonce, &[hint], &mut body, tag)
                    .ok()
                    .map(|()| body)
            })
            .ok_or(DatagramError::NotAuthentic)?;
        self.remember(run, stamp, now_micros)?;
        Ok(plaintext)
    }

    fn remember(
        &mut self,
        run: [u8; RUN_LEN],
        stamp: u64,
        now_micros: u64,
    ) -> Result<(), DatagramError> {
        if !self.runs.contains_key(&run) && self.runs.len() >= MAX_RUNS {
            let horizon = now_micros.saturating_sub(MAX_AGE.as_micros() as u64);
            self.runs
                .retain(|_, w| w.stamps.last().is_some_and(|last| *last >= horizon));
            if self.runs.len() >= MAX_RUNS {
                return Err(DatagramError::TooManyRuns);
            }
        }
        let window = self.runs.entry(run).or_default();
        let full = window.stamps.len() >= WINDOW;
        if window.stamps.contains(&stamp) || (full && window.stamps.first() > Some(&stamp)) {
            return Err(DatagramError::Replayed);
        }
        window.stamps.insert(stamp);
        if window.stamps.len() > WINDOW {
            window.stamps.pop_first();
        }
        Ok(())
    }
}

fn cipher(key: &Key) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new_from_slice(key.bytes()).expect("32-byte key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KEY_LEN;

    const NOW: u64 = 1_700_000_000_000_000;

    fn keyring(b: u8) -> Keyring {
        Keyring::new(Key([b; KEY_LEN]))
    }

    #[test]
    fn a_datagram_costs_29_bytes_and_opens_once() {
        let ring = keyring(1);
        let mut sealer = DatagramSealer::new().unwrap();
        let mut opener = DatagramOpener::default();
        let sealed = sealer.seal(&ring, NOW, b"ping");
        assert_eq!(sealed.len(), 4 + 29);
        assert_eq!(opener.open(&ring, NOW, &sealed).unwrap(), b"ping");
        assert_eq!(
            opener.open(&ring, NOW, &sealed),
            Err(DatagramError::Replayed)
        );
    }

    #[test]
    fn reordered_datagrams_open_within_the_window_and_not_beyond() {
        let ring = keyring(1);
        let mut sealer = DatagramSealer::new().unwrap();
        let mut opener = DatagramOpener::default();
        let sent: Vec<Vec<u8>> = (0..WINDOW as u64 + 2)
            .map(|i| sealer.seal(&ring, NOW + i, b"x"))
            .collect();
        assert!(opener.open(&ring, NOW, &sent[1]).is_ok());
        assert!(opener.open(&ring, NOW, &sent[0]).is_ok(), "late but new");
        for d in &sent[2..] {
            opener.open(&ring, NOW, d).unwrap();
        }
        // The window now starts past the first two: a replay of either is refused.
        assert_eq!(
            opener.open(&ring, NOW, &sent[0]),
            Err(DatagramError::Replayed)
        );
        assert_eq!(
            opener.open(&ring, NOW, &sent[1]),
            Err(DatagramError::Replayed)
        );
    }

    #[test]
    fn stale_wrong_key_forged_and_short_datagrams_are_refused() {
        let ring = keyring(1);
        let mut sealer = DatagramSealer::new().unwrap();
        let mut opener = DatagramOpener::default();
        let old = sealer.seal(&ring, NOW, b"x");
        let later = NOW + MAX_AGE.as_micros() as u64 + 1;
        assert_eq!(opener.open(&ring, later, &old), Err(DatagramError::Stale));
        let ahead = sealer.seal(&ring, later + MAX_AGE.as_micros() as u64, b"x");
        assert_eq!(opener.open(&ring, NOW, &ahead), Err(DatagramError::Stale));
        let sealed = DatagramSealer::new().unwrap().seal(&ring, NOW, b"x");
        assert_eq!(
            opener.open(&keyring(2), NOW, &sealed),
            Err(DatagramError::NotAuthentic)
        );
        let mut forged = sealed.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(
            opener.open(&ring, NOW, &forged),
            Err(DatagramError::NotAuthentic)
        );
        assert_eq!(
            opener.open(&ring, NOW, &sealed[..28]),
            Err(DatagramError::TooShort)
        );
        // A refused datagram left no trace: the genuine one still opens.
        assert!(opener.open(&ring, NOW, &sealed).is_ok());
    }

    #[test]
    fn a_sender_stamps_strictly_rising_even_if_its_clock_does_not() {
        let ring = keyring(1);
        let mut sealer = DatagramSealer::new().unwrap();
        let mut opener = DatagramOpener::default();
        for _ in 0..10 {
            let d = sealer.seal(&ring, NOW, b"same clock");
            opener.open(&ring, NOW, &d).unwrap();
        }
    }

    #[test]
    fn quiet_runs_make_room_for_new_ones() {
        let ring = keyring(1);
        let mut opener = DatagramOpener::default();
        for _ in 0..MAX_RUNS {
            let d = DatagramSealer::new().unwrap().seal(&ring, NOW, b"x");
            let _ = opener.open(&ring, NOW, &d);
        }
        let later = NOW + 2 * MAX_AGE.as_micros() as u64;
        let d = DatagramSealer::new().unwrap().seal(&ring, later, b"x");
        assert!(opener.open(&ring, later, &d).is_ok());
    }
}

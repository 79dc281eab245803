//! The keyring as a node's threads share it: the keys and the mode that every gossip
//! reader, writer and the probe lane consult, and the rejections they count.
//!
//! The event loop alone changes the keyring (an operator's command, or a newer keyring
//! learned from a member); readers and writers take a cheap snapshot ([`Active`]) when a
//! connection starts and look again only when [`SharedKeyring::generation`] moved, so a
//! connection derived from a key that was removed, or a plaintext connection once
//! plaintext is refused, is closed at its next frame.

use super::{KeyId, Keyring};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What a node sends and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The transition: accepts plaintext and keyed frames; sends keyed frames on TCP to
    /// nodes that answer a keyed handshake and plaintext to the others, and plaintext
    /// datagrams.
    Open,
    /// Encryption enforced, on its way to strict: sends keyed frames and datagrams only,
    /// still accepts plaintext from members that have not switched yet.
    Keyed,
    /// Sends and accepts keyed frames and datagrams only.
    Strict,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Keyed => "keyed",
            Mode::Strict => "strict",
        }
    }

    pub fn from_byte(b: u8) -> Option<Mode> {
        [Mode::Open, Mode::Keyed, Mode::Strict]
            .into_iter()
            .find(|m| *m as u8 == b)
    }

    pub fn accepts_plaintext(self) -> bool {
        self != Mode::Strict
    }

    /// Whether datagrams go out sealed, and TCP connections never fall back to plaintext.
    pub fn always_seals(self) -> bool {
        self != Mode::Open
    }
}

/// The keys and mode in force.
#[derive(Clone, Debug)]
pub struct Active {
    pub keyring: Keyring,
    pub mode: Mode,
}

/// Why a connection, frame or datagram was refused by the keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    TcpPlaintext,
    TcpUnknownKey,
    TcpBadHello,
    TcpBadFrame,
    TcpKeysOnPlaintext,
    TcpBadConfirmation,
    UdpPlaintext,
    UdpNotAuthentic,
    UdpStale,
    UdpReplayed,
    UdpTooManyRuns,
}

impl Rejection {
    pub const ALL: [Rejection; 11] = [
        Rejection::TcpPlaintext,
        Rejection::TcpUnknownKey,
        Rejection::TcpBadHello,
        Rejection::TcpBadFrame,
        Rejection::TcpKeysOnPlaintext,
        Rejection::TcpBadConfirmation,
        Rejection::UdpPlaintext,
        Rejection::UdpNotAuthentic,
        Rejection::UdpStale,
        Rejection::UdpReplayed,
        Rejection::UdpTooManyRuns,
    ];

    /// `tcp` (gossip connections) or `udp` (probe datagrams).
    pub fn lane(self) -> &'static str {
        match self {
            Rejection::TcpPlaintext
            | Rejection::TcpUnknownKey
            | Rejection::TcpBadHello
            | Rejection::TcpBadFrame
            | Rejection::TcpKeysOnPlaintext
            | Rejection::TcpBadConfirmation => "tcp",
            _ => "udp",
        }
    }

    /// The reason, as status and metrics label it.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::TcpPlaintext | Rejection::UdpPlaintext => "plaintext",
            Rejection::TcpUnknownKey => "unknown_key",
            Rejection::TcpBadHello => "bad_hello",
            Rejection::TcpBadFrame => "bad_frame",
            Rejection::TcpKeysOnPlaintext => "keys_on_plaintext",
            Rejection::TcpBadConfirmation => "bad_confirmation",
            Rejection::UdpNotAuthentic => "not_authentic",
            Rejection::UdpStale => "stale",
            Rejection::UdpReplayed => "replayed",
            Rejection::UdpTooManyRuns => "too_many_runs",
        }
    }

    fn index(self) -> usize {
        Rejection::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every rejection is listed")
    }
}

/// One kind of rejection and how many there were, for the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectionCount {
    pub lane: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

/// Time between two log lines about one kind of rejection.
pub const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Rejection counters, and when each kind was last logged.
#[derive(Default)]
struct Rejections {
    counts: [AtomicU64; Rejection::ALL.len()],
    /// Per kind: when it was last logged, and how many came since.
    logged: Mutex<HashMap<Rejection, (Instant, u64)>>,
}

struct Inner {
    active: RwLock<Arc<Active>>,
    generation: AtomicU64,
    rejections: Rejections,
}

/// The keyring every gossip thread of one node consults.
#[derive(Clone)]
pub struct SharedKeyring(Arc<Inner>);

impl std::fmt::Debug for SharedKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let active = self.current();
        f.debug_struct("SharedKeyring")
            .field("mode", &active.mode)
            .field("keys", &active.keyring.ids())
            .field("generation", &self.generation())
            .finish()
    }
}

impl SharedKeyring {
    pub fn new(active: Active) -> SharedKeyring {
        SharedKeyring(Arc::new(Inner {
            active: RwLock::new(Arc::new(active)),
            generation: AtomicU64::new(0),
            rejections: Rejections::default(),
        }))
    }

    /// The keys and mode in force now.
    pub fn current(&self) -> Arc<Active> {
        self.0
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Moves on at every change: a thread holding a snapshot looks again when it differs.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// Puts new keys or a new mode in force.
    pub fn set(&self, active: Active) {
        *self.0.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(active);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a session derived from `id` may go on.
    pub fn still_holds(&self, id: KeyId) -> bool {
        self.current().keyring.find(id).is_some()
    }

    /// Counts a rejection and logs it, at most once per [`REJECTION_LOG_INTERVAL`] per
    /// kind (the line says how many were not logged).
    pub fn reject(&self, what: Rejection, peer: &str, detail: &str) {
        let r = &self.0.rejections;
        r.counts[what.index()].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut logged = r.logged.lock().unwrap_or_else(|e| e.into_inner());
        let due = logged
            .get(&what)
            .is_none_or(|(at, _)| now.duration_since(*at) >= REJECTION_LOG_INTERVAL);
        let entry = logged.entry(what).or_insert((now, 0));
        if due {
            let unlogged = std::mem::take(&mut entry.1);
            entry.0 = now;
            log::warn!(
                "refused gossip from {peer} ({} {}): {detail}{}",
                what.lane(),
                what.reason(),
                if unlogged > 0 {
                    format!("; {unlogged} more like it since the last such line")
                } else {
                    String::new()
                }
            );
        } else {
            entry.1 += 1;
        }
    }

    /// Every kind of rejection with its count.
    pub fn rejections(&self) -> Vec<RejectionCount> {
        Rejection::ALL
            .iter()
            .map(|r| RejectionCount {
                lane: r.lane(),
                reason: r.reason(),
                count: self.0.rejections.counts[r.index()].load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{Key, KEY_LEN};

    #[test]
    fn a_change_moves_the_generation_and_rejections_are_counted_per_kind() {
        let ring = Keyring::new(Key([1; KEY_LEN]));
        let shared = SharedKeyring::new(Active {
            keyring: ring.clone(),
            mode: Mode::Strict,
        });
        let g = shared.generation();
        assert!(shared.still_holds(ring.primary().id()));
        shared.set(Active {
            keyring: Keyring::new(Key([2; KEY_LEN])),
            mode: Mode::Strict,
        });
        assert_ne!(shared.generation(), g);
        assert!(!shared.still_holds(ring.primary().id()));
        for _ in 0..3 {
            shared.reject(Rejection::UdpReplayed, "x", "a replay");
        }
        shared.reject(Rejection::TcpPlaintext, "y", "plaintext");
        let counts = shared.rejections();
        let count = |lane: &str, reason: &str| {
            counts
                .iter()
                .find(|c| c.lane == lane && c.reason == reason)
                .map(|c| c.count)
        };
        assert_eq!(count("udp", "replayed"), Some(3));
        assert_eq!(count("tcp", "plaintext"), Some(1));
        assert_eq!(count("udp", "plaintext"), Some(0));
    }

    #[test]
    fn modes_order_and_round_trip() {
        assert!(Mode::Open < Mode::Keyed && Mode::Keyed < Mode::Strict);
        for m in [Mode::Open, Mode::Keyed, Mode::Strict] {
            assert_eq!(Mode::from_byte(m as u8), Some(m));
        }
        assert_eq!(Mode::from_byte(9), None);
        assert!(!Mode::Strict.accepts_plaintext() && Mode::Keyed.accepts_plaintext());
        assert!(!Mode::Open.always_seals() && Mode::Keyed.always_seals());
    }
}

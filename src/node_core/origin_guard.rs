//! Keeps this node the only writer under its origin.
//!
//! Two processes writing under one origin give out the same versions, and the max-merge
//! then swallows one's increments. That happens when a data directory is copied to start
//! a second node, or a backup is restored over a node whose later writes peers still
//! hold. The guard decides when writes must wait, and why:
//!
//! - **The fence.** A node that recovered its state from disk writes nothing until a live
//!   member's digest has shown that no one holds its origin beyond its log (a peer that
//!   does makes the core take a new incarnation first), or until the fence times out
//!   with no member to ask.
//! - **Twins.** Membership reports live records of this node's name from other
//!   processes: an earlier run at another address (a copy started here, or this node's
//!   own past run not yet found dead) or a later run (a copy started elsewhere). Only
//!   the address can tell, so the guard pings it directly, naming this node: an answer
//!   means another live process runs under this name, and writes are refused until it
//!   has stopped answering for a while. No answer clears it.
//! - **Broken.** The storage could not record a new incarnation: writes are refused
//!   until a restart.
//!
//! A peer claiming this node's origin beyond its log is not the guard's to refuse: the
//! core answers it at once with a new incarnation, which is always safe.

use crate::member::{Member, NodeName};
use crate::membership::Message;
use serde::Serialize;
use std::time::Duration;

/// How often a suspected twin is pinged.
pub const TWIN_PING_INTERVAL: Duration = Duration::from_millis(500);
/// Unanswered pings after which a suspected twin is taken for a past run that is gone.
const NOT_A_TWIN_AFTER: u32 = 4;
/// Unanswered pings in a row after which a confirmed twin is taken to have stopped.
const TWIN_GONE_AFTER: u32 = 6;
/// The sequence number of twin pings; membership's own acks never carry it.
const TWIN_SEQ: u64 = u64::MAX;

/// The guard's part of the node's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GuardStatus {
    /// Whether writes are accepted now.
    pub writable: bool,
    /// Why not, in the words of the 503 answer.
    pub refusal: Option<String>,
    /// Incarnations taken while running because a peer held this node's origin ahead.
    pub new_incarnations: u64,
    /// Another live process answered under this node's name, at this gossip address.
    pub twin: Option<String>,
}

#[derive(Debug)]
enum Fence {
    Open,
    Waiting { until: Duration, timeout: Duration },
}

#[derive(Debug)]
struct TwinCheck {
    other: Member,
    confirmed: bool,
    /// Pings sent since the last answer.
    misses: u32,
    next_ping: Duration,
}

#[derive(Debug)]
pub struct OriginGuard {
    fence: Fence,
    twin: Option<TwinCheck>,
    broken: Option<String>,
    new_incarnations: u64,
}

impl Default for OriginGuard {
    fn default() -> OriginGuard {
        OriginGuard {
            fence: Fence::Open,
            twin: None,
            broken: None,
            new_incarnations: 0,
        }
    }
}

impl OriginGuard {
    /// Holds writes until a live member's digest arrives, at most `timeout` from `now`.
    pub fn fence(&mut self, now: Duration, timeout: Duration) {
        self.fence = Fence::Waiting {
            until: now + timeout,
            timeout,
        };
    }

    /// Why a write must be refused now, if it must.
    pub fn refusal(&self, me: &NodeName) -> Option<String> {
        if let Some(reason) = &self.broken {
            return Some(reason.clone());
        }
        if let Some(twin) = self.twin.as_ref().filter(|t| t.confirmed) {
            return Some(format!(
                "origin conflict: another live process runs as {me} (gossip {}); a copied \
                 data directory? Writes stay refused until one of the two stops",
                twin.other.gossip_addr
            ));
        }
        match self.fence {
            Fence::Open => None,
            Fence::Waiting { timeout, .. } => Some(format!(
                "starting: waiting (at most {} ms) for a live member to confirm that no \
                 other process holds this node's origin beyond its log; retry shortly",
                timeout.as_millis()
            )),
        }
    }

    /// A live member's digest was checked against this node's own origin.
    pub fn digest_checked(&mut self) {
        if matches!(self.fence, Fence::Waiting { .. }) && self.twin.is_none() {
            log::info!("a live member's digest confirmed this node's origin: writes open");
            self.fence = Fence::Open;
        }
    }

    /// The core took a new incarnation: nothing can hold it ahead.
    pub fn renewed(&mut self) {
        self.new_incarnations += 1;
    }

    /// The storage could not record a new incarnation.
    pub fn break_with(&mut self, reason: String) {
        self.broken = Some(reason);
    }

    /// Membership saw a live record of this node's name from another process's run at
    /// `other.gossip_addr`; checks whether something answers there under this name.
    pub fn suspect_twin(&mut self, now: Duration, other: Member) {
        if self.twin.as_ref().is_some_and(|t| t.other == other) {
            return;
        }
        log::warn!(
            "a live record of this node's name from another run at {} (incarnation \
             {:016x}): checking whether another process runs there",
            other.gossip_addr,
            other.incarnation
        );
        self.twin = Some(TwinCheck {
            other,
            confirmed: false,
            misses: 0,
            next_ping: now,
        });
    }

    /// Takes the answer to a twin ping; returns whether `msg` was one (and so is not
    /// membership's).
    pub fn take_ack(&mut self, me: &NodeName, from_addr: &str, msg: &Message) -> bool {
        let Message::Ack { seq, from, .. } = msg else {
            return false;
        };
        let Some(twin) = self.twin.as_mut() else {
            return false;
        };
        if *seq != TWIN_SEQ || from != me || from_addr != twin.other.gossip_addr {
            return false;
        }
        if !twin.confirmed {
            log::error!(
                "another live process runs as {me} at {from_addr} (incarnation {:016x}): \
                 writes refused until one of the two stops",
                twin.other.incarnation
            );
        }
        twin.confirmed = true;
        twin.misses = 0;
        true
    }

    /// Runs what is due at `now`: the fence's timeout and the twin pings. Returns a ping
    /// to send (gossip address, message) when one is due.
    pub fn handle_timer(&mut self, now: Duration, me: &NodeName) -> Option<(String, Message)> {
        if let Fence::Waiting { until, timeout } = self.fence {
            if now >= until && self.twin.is_none() {
                log::warn!(
                    "no live member confirmed this node's origin within {} ms: writes open \
                     without the check",
                    timeout.as_millis()
                );
                self.fence = Fence::Open;
            }
        }
        let twin = self.twin.as_mut()?;
        if now < twin.next_ping {
            return None;
        }
        if twin.confirmed && twin.misses >= TWIN_GONE_AFTER {
            log::warn!(
                "the other process running as {me} at {} stopped answering: writes resume",
                twin.other.gossip_addr
            );
            self.twin = None;
            return None;
        }
        if !twin.confirmed && twin.misses >= NOT_A_TWIN_AFTER {
            log::info!(
                "nothing answers as {me} at {}: a past run of this node, not another process",
                twin.other.gossip_addr
            );
            self.twin = None;
            return None;
        }
        twin.misses += 1;
        twin.next_ping = now + TWIN_PING_INTERVAL;
        let ping = Message::Ping {
            seq: TWIN_SEQ,
            from: me.clone(),
            target: me.clone(),
            updates: Vec::new(),
        };
        Some((twin.other.gossip_addr.clone(), ping))
    }

    /// When [`OriginGuard::handle_timer`] must next run, if ever.
    pub fn next_deadline(&self) -> Option<Duration> {
        let fence = match self.fence {
            Fence::Waiting { until, .. } => Some(until),
            Fence::Open => None,
        };
        let twin = self.twin.as_ref().map(|t| t.next_ping);
        match (fence, twin) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn status(&self, me: &NodeName) -> GuardStatus {
        let refusal = self.refusal(me);
        GuardStatus {
            writable: refusal.is_none(),
            refusal,
            new_incarnations: self.new_incarnations,
            twin: self
                .twin
                .as_ref()
                .filter(|t| t.confirmed)
                .map(|t| t.other.gossip_addr.clone()),
        }
    }
}

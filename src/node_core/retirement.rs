//! When this node retires an origin (see `crdt::retire`): once the member that wrote
//! under it is gone for good and every current member holds all of it.
//!
//! An origin is *gone* here when no member announces it: its name is not a member, or
//! the member under that name runs with another data incarnation (the node restarted
//! without its data, or was replaced), or it is dead or left. It is gone *for good* once
//! it has been gone for the retire-after time without a break. It retires at version `V`
//! when this node knows it through `V` with nothing past (`State::retirable_at`) and the
//! last whole digest of every alive or suspect member shows it at `V` or below: no
//! current member holds more of it. (A member that shows less, a newcomer say, gets the
//! rest from the tombstone; waiting for every member to hold all of it would let a
//! cluster whose members come and go faster than they catch up retire nothing.) A node
//! that has not yet had a member's full membership, or a whole digest from every
//! current member, retires nothing: it does not know every member's state.
//!
//! A node that joins cannot tell how long an origin it learns of has been gone, so
//! peers that send it a retired origin's tombstone say they retired it
//! (`Frame::Retired`): an origin gone here too, that a peer retired at the version this
//! node knows it up to, retires without waiting out the retire-after time. So does one
//! this node retired before a restart whose logged retirement recovery could not make
//! yet (acceptances of keys the origin made return with their records until they
//! expire again).
//!
//! An origin retired for the compact-after time is compacted (see `crdt::compact`): its
//! tombstone's entries go, their totals stay in the compacted sums. The time counts from
//! when this node retired it, or from this node's start for one it recovered retired.
//!
//! Retiring never changes a value (the CRDT keeps the origin's totals in a retired sum),
//! so a wrong guess costs work, not exactness: an origin that writes again (a node taken
//! for dead across a long partition) comes back on its first change past `V`, and is
//! gone again only after another retire-after time.

use crate::crdt::{Origin, OriginVersion};
use crate::engine::Engine;
use crate::membership::{self, Membership};
use std::collections::HashMap;
use std::time::Duration;

/// How long an origin must be gone before it retires, unless configured otherwise.
pub const DEFAULT_RETIRE_AFTER: Duration = Duration::from_secs(3600);
/// How long an origin stays retired before it is compacted, unless configured otherwise:
/// a week, past the idempotency-key window (its keys have expired everywhere) and long
/// enough that a replica away for less can still be reconciled from tombstones.
pub const DEFAULT_COMPACT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often origins are looked over.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often each member is asked for its whole digest while a retirement waits for
/// one: seldom, as a digest of many origins is large and retiring can wait.
pub const RETIRE_DIGEST_INTERVAL: Duration = Duration::from_secs(10);

/// Which origins are gone, since when, and when to look again.
#[derive(Debug)]
pub struct RetirementPolicy {
    /// `None`: never retire.
    after: Option<Duration>,
    /// `None`: never compact.
    compact_after: Option<Duration>,
    /// Retired origins not compacted yet, with the version and the time this node first
    /// held them retired at that version (retired again after an undo, the clock starts
    /// over).
    retired_since: HashMap<Origin, (u64, Duration)>,
    next_compaction: Duration,
    gone_since: HashMap<Origin, Duration>,
    next_check: Duration,
    /// Some origin is gone for good but a member's last whole digest shows more of it,
    /// or none came yet: newer ones are needed.
    waits_for_digests: bool,
}

impl RetirementPolicy {
    pub fn new(after: Option<Duration>) -> RetirementPolicy {
        RetirementPolicy {
            after,
            compact_after: None,
            retired_since: HashMap::new(),
            next_compaction: Duration::ZERO,
            gone_since: HashMap::new(),
            next_check: Duration::ZERO,
            waits_for_digests: false,
        }
    }

    /// Compacts origins retired for `after` (`None`: never).
    pub fn with_compaction(mut self, after: Option<Duration>) -> Self {
        self.compact_after = after;
        self
    }

    /// Compacts in `engine` the origins retired here for the compact-after time; returns
    /// them, each with the version it retired at. Looks once a second at most.
    pub fn compact(&mut self, now: Duration, engine: &mut Engine) -> Vec<OriginVersion> {
        let mut compacted = Vec::new();
        let Some(after) = self.compact_after.filter(|_| now >= self.next_compaction) else {
            return compacted;
        };
        self.next_compaction = now + CHECK_INTERVAL;
        let mut retired_since = HashMap::with_capacity(self.retired_since.len());
        for ov in engine.state().retired_origins() {
            if engine.state().is_compacted(&ov.origin) {
                continue;
            }
            let since = match self.retired_since.get(&ov.origin) {
                Some(&(version, since)) if version == ov.version => since,
                _ => now,
            };
            if now >= since.checked_add(after).unwrap_or(Duration::MAX) {
                compacted.push(ov);
            } else {
                retired_since.insert(ov.origin, (ov.version, since));
            }
        }
        self.retired_since = retired_since;
        compacted.retain(|ov| engine.compact(&ov.origin, ov.version));
        compacted
    }

    /// Whether a retirement waits for newer whole digests of the members.
    pub fn waits_for_digests(&self) -> bool {
        self.waits_for_digests
    }

    /// Looks the origins over if a check is due at `now`, and retires in `engine` those
    /// gone for good and stable over the members of `membership`; returns them, each
    /// with the version it retired at.
    pub fn run(
        &mut self,
        now: Duration,
        engine: &mut Engine,
        membership: &Membership,
    ) -> Vec<OriginVersion> {
        let mut retired = Vec::new();
        let Some(after) = self.after.filter(|_| now >= self.next_check) else {
            return retired;
        };
        self.next_check = now + CHECK_INTERVAL;
        if !membership.has_synced() {
            return retired;
        }
        let announced: HashMap<&str, u64> = membership
            .members()
            .filter(|m| {
                matches!(
                    m.state,
                    membership::State::Alive | membership::State::Suspect
                )
            })
            .map(|m| (m.member.name.as_str(), m.member.incarnation))
            .collect();
        let me = engine.origin().clone();
        let mut due = Vec::new();
        let mut gone_since = HashMap::with_capacity(self.gone_since.len());
        for (origin, known) in engine.state().live_origins() {
            if *origin == me || announced.get(origin.node.as_str()) == Some(&origin.incarnation) {
                continue;
            }
            let since = self.gone_since.get(origin).copied().unwrap_or(now);
            gone_since.insert(origin.clone(), since);
            let retired_elsewhere = engine.retired_hint(origin) == Some(known)
                || engine.state().logged_retirement(origin) == Some(known);
            // A huge retire-after time saturates instead of overflowing.
            let due_at = since.checked_add(after).unwrap_or(Duration::MAX);
            if now >= due_at || retired_elsewhere {
                due.push((origin.clone(), known));
            }
        }
        self.gone_since = gone_since;
        self.waits_for_digests = false;
        for (origin, known) in due {
            if is_stable(engine, membership, &origin, known) {
                if engine.retire(&origin, known) {
                    self.gone_since.remove(&origin);
                    retired.push(OriginVersion {
                        origin,
                        version: known,
                    });
                }
            } else {
                self.waits_for_digests = true;
            }
        }
        retired
    }
}

/// Whether every alive or suspect member other than this node showed `origin` at
/// `version` or below in its last whole digest.
fn is_stable(engine: &Engine, membership: &Membership, origin: &Origin, version: u64) -> bool {
    membership
        .members()
        .filter(|m| {
            !m.is_self
                && matches!(
                    m.state,
                    membership::State::Alive | membership::State::Suspect
                )
        })
        .all(|m| {
            engine
                .peer_digest(&m.member.name)
                .is_some_and(|digest| digest.get(origin).is_none_or(|&v| v <= version))
        })
}

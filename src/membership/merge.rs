//! How records change a node's view: the precedence rule applied to news from others,
//! the rules a node applies to news about itself, suspicion timers, and tombstones.
//!
//! Every change to the table goes through [`Membership::store`], which keeps the digest,
//! the live count, suspicion and reaping timers, the probe rotation, the change events
//! and the gossip queue in step with the records.

use super::member::{MemberChange, Run, State, Update};
use super::suspicion::Suspicion;
use super::{Entry, Membership, Output};
use crate::member::NodeName;
use std::time::Duration;

/// Reaped members whose last record is remembered (about 100 bytes each).
pub(super) const FORGOTTEN_CAP: usize = 4096;
/// Most members a node keeps (tombstones included): past it, new names are turned away
/// (with one log line per minute), so a flood of made-up joins cannot grow the table, the
/// probe rotation and the gossip peer set without bound.
pub const MAX_MEMBERS: usize = 16_384;
/// Time between two "member list full" log lines.
const FULL_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Membership {
    /// Applies one record from another node. `spread`: a change it makes is queued for
    /// gossip (news from gossip is passed on; records from a full exchange are not, since
    /// the exchange is a repair — except the peer's own record and a member coming back
    /// from a tombstone, which the rest most likely have not heard of).
    pub(super) fn apply(&mut self, now: Duration, update: Update, spread: bool) {
        if update.member.name == self.me {
            self.about_me(now, update);
            return;
        }
        let Some(entry) = self.entries.get(&update.member.name) else {
            // A tombstone about an unknown member is ignored: it was reaped here (or never
            // known), and adding it back would only make nodes reap each other's
            // tombstones in turn. A record no newer than a reaped member's last one is
            // stale gossip and must not bring it back.
            if let Some((last, _)) = self.forgotten.get(&update.member.name) {
                if !update.supersedes(last) {
                    return;
                }
            }
            if update.state.is_live() {
                if self.entries.len() >= MAX_MEMBERS {
                    self.turn_away(now, &update.member.name);
                    return;
                }
                let revived = self.forgotten.remove(&update.member.name).is_some();
                self.store(now, update, spread || revived);
            }
            return;
        };
        if update.supersedes(&entry.update) {
            // A member back from the dead is news that the rest of the cluster most
            // likely lacks, wherever it was learned.
            let spread = spread || (entry.update.state.is_tombstone() && update.state.is_live());
            let was_live =
                entry.update.state.is_live() && entry.update.member.run() == update.member.run();
            let dead = update.state == State::Dead;
            self.store(now, update.clone(), spread);
            if dead && was_live && self.config.lifeguard {
                // Tell it at once: if it is alive after all, it refutes.
                self.tell_member(update);
            }
        } else if update.key() == entry.update.key() && update.state == State::Suspect {
            let (name, by) = (update.member.name.clone(), update.by.clone());
            self.confirm_suspicion(&name, &by);
        }
    }

    /// The member list is full: `name` is not added, counted, and logged at most once a
    /// minute.
    fn turn_away(&mut self, now: Duration, name: &NodeName) {
        self.stats.turned_away += 1;
        if self
            .full_logged_at
            .is_none_or(|t| now >= t + FULL_LOG_INTERVAL)
        {
            self.full_logged_at = Some(now);
            log::warn!(
                "member list full ({MAX_MEMBERS} members and tombstones): not adding {name} \
                 ({} turned away so far)",
                self.stats.turned_away
            );
        }
    }

    /// A message came from `name`, so it runs: if this node holds it dead or left (or
    /// reaped), tell it at once, so it refutes — or learns it was removed — even when no
    /// tombstone about it is left anywhere to meet it in a full exchange.
    pub(super) fn heard_from(&mut self, name: &NodeName) {
        if *name == self.me {
            return;
        }
        let held = match self.entries.get(name) {
            Some(e) if e.update.state.is_tombstone() => Some(e.update.clone()),
            Some(_) => None,
            None => self.forgotten.get(name).map(|(u, _)| u.clone()),
        };
        if let Some(update) = held {
            self.tell_member(update);
        }
    }

    /// News about this node itself. Within this run, a suspect or dead claim at or above
    /// our liveness is refuted by raising it; a left claim at or above it is accepted (a
    /// removal, or our own leave echoed back). A record of an earlier run is stale and
    /// answered by spreading ours; if it is live at another address it is reported, as it
    /// may be another process with our name rather than our own past. A later run that is dead or left is a past run under
    /// a clock that went back: we start a run just after it. A later run that is alive is
    /// another live process with our name: reported, never fought over.
    fn about_me(&mut self, now: Duration, update: Update) {
        let mine = self.entries[&self.me].update.clone();
        let (theirs, ours) = (update.member.run(), mine.member.run());
        if theirs < ours {
            let elsewhere = update.member.gossip_addr != mine.member.gossip_addr;
            if update.state.is_live() && elsewhere && self.older_run_reported != Some(theirs) {
                self.older_run_reported = Some(theirs);
                self.outputs.push(Output::OlderRun {
                    other: update.member,
                });
            }
            if !self.broadcasts.contains(&self.me) {
                self.broadcasts.push(mine);
            }
            return;
        }
        if theirs > ours {
            if update.state.is_live() {
                if self.conflict_reported != Some(theirs) {
                    self.conflict_reported = Some(theirs);
                    self.outputs.push(Output::NameConflict {
                        other: update.member,
                    });
                }
            } else if mine.state.is_live() {
                let mut member = mine.member.clone();
                member.started_at = update.member.started_at.saturating_add(1);
                let renewed = Update {
                    member,
                    liveness: 0,
                    state: State::Alive,
                    by: self.me.clone(),
                };
                self.store(now, renewed, true);
            }
            return;
        }
        match update.state {
            _ if mine.state == State::Left => {}
            State::Alive => {
                if update.liveness > mine.liveness {
                    let adopted = Update {
                        liveness: update.liveness,
                        ..mine
                    };
                    self.store(now, adopted, true);
                }
            }
            State::Suspect | State::Dead => {
                if update.liveness >= mine.liveness {
                    let refuted = Update {
                        liveness: update.liveness + 1,
                        ..mine
                    };
                    self.stats.refutations += 1;
                    self.store(now, refuted, true);
                    // Being suspected hints that this node is the slow one.
                    self.awareness_delta(1);
                }
            }
            State::Left => {
                if update.liveness >= mine.liveness {
                    self.probe = None;
                    self.store(now, update, true);
                }
            }
        }
    }

    /// One more independent declarer of a suspicion this node holds.
    pub(super) fn confirm_suspicion(&mut self, name: &NodeName, by: &NodeName) {
        let Some(entry) = self.entries.get_mut(name) else {
            return;
        };
        let Some(suspicion) = entry.suspicion.as_mut() else {
            return;
        };
        if suspicion.confirm(by) {
            // Passed on, so others count this confirmation too.
            let update = Update {
                by: by.to_owned(),
                ..entry.update.clone()
            };
            self.broadcasts.push(update);
            self.index_suspicion(name);
        }
    }

    /// Replaces the record held for `update.member.name`, keeping everything derived from
    /// the records in step.
    /// Takes a removed entry out of the digest, the live count and the deadline queues.
    fn unindex(&mut self, name: &NodeName, old: &Entry) {
        self.digest ^= old.update.digest_share();
        if old.update.state.is_live() {
            self.live -= 1;
        }
        if let Some(d) = old.suspicion_deadline {
            self.suspicion_deadlines.remove(&(d, name.clone()));
        }
        if let Some(t) = old.reap_at {
            self.reap_queue.remove(&(t, name.clone()));
        }
    }

    pub(super) fn store(&mut self, now: Duration, update: Update, spread: bool) {
        let name = update.member.name.clone();
        let old = self.entries.remove(&name);
        if let Some(old) = &old {
            self.unindex(&name, old);
        }
        self.digest ^= update.digest_share();
        if update.state.is_live() {
            self.live += 1;
        }
        if name != self.me {
            if let Some(o) = old.as_ref().filter(|o| o.update.state.is_live()) {
                self.forget_peer(&name, &o.update.member.gossip_addr);
            }
            if update.state.is_live() {
                if let Err(at) = self.peers.binary_search(&name) {
                    self.peers.insert(at, name.clone());
                }
                *self
                    .live_addrs
                    .entry(update.member.gossip_addr.clone())
                    .or_default() += 1;
            }
        }
        let old_run: Option<Run> = old.as_ref().map(|o| o.update.member.run());
        let new_run = old_run.is_some_and(|r| r != update.member.run());
        let old_state = old.as_ref().map(|o| o.update.state);
        let old_reap = old.as_ref().and_then(|o| o.reap_at);
        let changed = new_run || old_state != Some(update.state);
        let since = match &old {
            Some(o) if !changed => o.since,
            _ => now,
        };
        let suspicion = match old {
            Some(o) if !changed && update.state == State::Suspect => o.suspicion,
            _ if update.state == State::Suspect => Some(self.new_suspicion(now, &update.by)),
            _ => None,
        };
        let reap_at = match old_reap {
            // Still a tombstone of the same run: its reaping clock runs from its death.
            Some(t) if update.state.is_tombstone() && !new_run => Some(t),
            _ if update.state.is_tombstone() => Some(now + self.config.reap_time),
            _ => None,
        };
        if let Some(t) = reap_at {
            self.reap_queue.insert((t, name.clone()));
        }
        if name != self.me && update.state.is_live() && !old_state.is_some_and(State::is_live) {
            self.rotation.insert(&name, &mut self.rng);
        }
        if changed || old_state.is_none() {
            self.outputs.push(Output::Changed(MemberChange {
                member: update.member.clone(),
                from: old_state,
                to: Some(update.state),
                new_run,
                by: update.by.clone(),
            }));
        }
        if spread {
            self.broadcasts.push(update.clone());
        }
        self.entries.insert(
            name.clone(),
            Entry {
                update,
                since,
                suspicion,
                suspicion_deadline: None,
                reap_at,
            },
        );
        self.index_suspicion(&name);
    }

    /// Takes a member that is no longer live (or is about to be re-added) out of the
    /// peer list and the live addresses.
    fn forget_peer(&mut self, name: &NodeName, addr: &str) {
        if let Ok(at) = self.peers.binary_search(name) {
            self.peers.remove(at);
        }
        if let Some(count) = self.live_addrs.get_mut(addr) {
            *count -= 1;
            if *count == 0 {
                self.live_addrs.remove(addr);
            }
        }
    }

    fn new_suspicion(&self, now: Duration, by: &NodeName) -> Suspicion {
        let (min, max) = self.config.suspicion_bounds(self.live);
        if self.config.lifeguard {
            let expected = self
                .config
                .suspicion_confirmations
                .min(self.live.saturating_sub(2) as u32);
            Suspicion::new(now, min, max, expected, by)
        } else {
            // Plain SWIM: one fixed timeout.
            Suspicion::new(now, min, min, 0, by)
        }
    }

    /// Puts `name`'s suspicion deadline in the index, under the current local health.
    pub(super) fn index_suspicion(&mut self, name: &NodeName) {
        let scale = self.awareness.score() + 1;
        let Some(entry) = self.entries.get_mut(name) else {
            return;
        };
        if let Some(d) = entry.suspicion_deadline.take() {
            self.suspicion_deadlines.remove(&(d, name.to_owned()));
        }
        if let Some(s) = &entry.suspicion {
            let d = s.deadline(scale);
            entry.suspicion_deadline = Some(d);
            self.suspicion_deadlines.insert((d, name.to_owned()));
        }
    }

    /// Moves the local health score; suspicion deadlines follow it.
    pub(super) fn awareness_delta(&mut self, delta: i64) {
        if self.awareness.apply(delta) {
            let suspects: Vec<NodeName> = self
                .suspicion_deadlines
                .iter()
                .map(|(_, n)| n.clone())
                .collect();
            for name in suspects {
                self.index_suspicion(&name);
            }
        }
    }

    /// Declares dead every suspect whose suspicion has run out.
    pub(super) fn expire_suspicions(&mut self, now: Duration) {
        while let Some((deadline, name)) = self.suspicion_deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.suspicion_deadlines.remove(&(deadline, name.clone()));
            let Some(entry) = self.entries.get_mut(&name) else {
                continue;
            };
            entry.suspicion_deadline = None;
            let update = Update {
                state: State::Dead,
                by: self.me.clone(),
                ..entry.update.clone()
            };
            self.store(now, update.clone(), true);
            if self.config.lifeguard {
                self.tell_member(update);
            }
        }
    }

    /// Forgets every tombstone whose reap time has come.
    pub(super) fn reap(&mut self, now: Duration) {
        while let Some((at, name)) = self.reap_queue.first().cloned() {
            if at > now {
                break;
            }
            self.reap_queue.remove(&(at, name.clone()));
            let Some(entry) = self.entries.remove(&name) else {
                continue;
            };
            self.digest ^= entry.update.digest_share();
            self.broadcasts.remove(&name);
            self.outputs.push(Output::Changed(MemberChange {
                member: entry.update.member.clone(),
                from: Some(entry.update.state),
                to: None,
                new_run: false,
                by: self.me.clone(),
            }));
            self.remember_forgotten(now, entry.update);
        }
    }

    /// Keeps a reaped member's last record, so stale records about it are recognised
    /// and it can be told of its death if it turns up; the oldest go first past
    /// [`FORGOTTEN_CAP`].
    fn remember_forgotten(&mut self, now: Duration, last: Update) {
        self.forgotten.insert(last.member.name.clone(), (last, now));
        if self.forgotten.len() > FORGOTTEN_CAP {
            let oldest = self
                .forgotten
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(n, _)| n.clone());
            if let Some(name) = oldest {
                self.forgotten.remove(&name);
            }
        }
    }
}

//! The compaction exchange (see `crdt::compact`): a node offers its compaction to a peer
//! whose digest lacks part of an origin it compacted (anti-entropy cannot send that
//! origin's entries: they are gone) or holds one past its compaction, and to a live
//! member whose own origin it compacted (which, seeing its origin listed, writes under
//! a new incarnation); and it gathers a peer's offer, part by part, to adopt it whole
//! once the last part is in.
//!
//! An offer is cut into frames sent in order on one link, all with the offer's number; a
//! part that does not continue the offer being gathered from that peer drops it (a link
//! that broke mid-way, a newer offer), and the next offer starts over. Offers go to
//! gossip peers only, at most one per [`OFFER_INTERVAL`] to each, the interval doubling
//! up to [`MAX_OFFER_INTERVAL`] while the peer still differs: a peer that cannot adopt
//! (it compacted an origin this node has not, say) is not flooded while the two stay
//! apart.
use super::{Engine, Output};
use crate::codec::{self, Frame};
use crate::crdt::{CompactedSum, Compaction, Digest};
use crate::member::NodeName;
use crate::summary::Span;
use std::collections::HashMap;
use std::time::Duration;

/// The least time between two offers to one peer; it doubles with every offer the peer
/// still lacks something after (it refused, or the offer was lost), up to
/// [`MAX_OFFER_INTERVAL`], since an offer can be large.
pub const OFFER_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_OFFER_INTERVAL: Duration = Duration::from_secs(600);
/// Most origins and sums one offer being gathered may hold (room for the default cap
/// of counters and as many origins).
const MAX_GATHERED: usize = 1 << 22;
/// Most offers gathered at once (from different peers): each can be large.
const MAX_GATHERINGS: usize = 2;

/// What the engine keeps of compaction offers, made and received.
#[derive(Debug, Default)]
pub(super) struct Exchange {
    /// Per peer, when this node may offer it its compaction again, and the interval
    /// after that.
    next_offer: HashMap<NodeName, (Duration, Duration)>,
    /// Per peer, the offer being gathered from it.
    gathering: HashMap<NodeName, Gathering>,
}

#[derive(Debug)]
struct Gathering {
    offer: u64,
    next: u32,
    parts: u32,
    compaction: Compaction,
}

/// One part of an offer, as a Compaction frame carries it.
pub(super) struct Part {
    pub offer: u64,
    pub part: u32,
    pub parts: u32,
    pub origins: Digest,
    pub sums: Vec<CompactedSum>,
}

impl Exchange {
    /// Forgets what is kept of `peer` (gone for good).
    pub(super) fn forget(&mut self, peer: &NodeName) {
        self.next_offer.remove(peer);
        self.gathering.remove(peer);
    }
}

impl Engine {
    /// Offers this node's compaction to `to` if its digest of `span` differs from this
    /// node's on an origin compacted here, and no offer went to it lately.
    pub(super) fn offer_compaction_if_differing(
        &mut self,
        now: Duration,
        to: &NodeName,
        digest: &Digest,
        span: Span,
    ) {
        if !self.state.differs_on_compacted(digest, span) {
            if span == Span::ALL {
                self.compaction.next_offer.remove(to);
            }
            return;
        }
        self.offer_compaction(now, to);
    }

    /// Offers this node's compaction to peer `to` unless an offer went to it lately: a
    /// peer whose digest differs on a compacted origin, or one whose own origin is
    /// compacted here (it must learn that before it writes more under it).
    pub fn offer_compaction(&mut self, now: Duration, to: &NodeName) {
        if self.peers.binary_search(to).is_err() {
            return;
        }
        let interval = match self.compaction.next_offer.get(to) {
            Some(&(at, _)) if now < at => return,
            Some(&(_, interval)) => interval,
            None => OFFER_INTERVAL,
        };
        let next = (now + interval, (interval * 2).min(MAX_OFFER_INTERVAL));
        self.compaction.next_offer.insert(to.clone(), next);
        let compaction = self.state.compaction();
        let frames = self.cut_compaction(compaction);
        let Ok(parts) = u32::try_from(frames.len()) else {
            return;
        };
        if u64::from(parts) > codec::MAX_COMPACTION_PARTS {
            log::warn!("compaction too large to offer in {parts} frames; raise --max-frame");
            return;
        }
        let offer = self.rng.u64(1..);
        self.stats.compaction_offers += 1;
        for (part, (origins, sums)) in (0..).zip(frames) {
            let frame = Frame::Compaction {
                offer,
                part,
                parts,
                origins,
                sums,
            };
            self.send(to.clone(), frame);
        }
    }

    /// `compaction` cut into frames of at most `max_payload` bytes: origins first, then
    /// sums, in order.
    fn cut_compaction(&self, compaction: Compaction) -> Vec<(Digest, Vec<CompactedSum>)> {
        // Room for the offer's number, part numbers and the two counts.
        let budget = self.config.max_payload - 40;
        let mut frames = Vec::new();
        let mut current: (Digest, Vec<CompactedSum>) = Default::default();
        let mut used = 0;
        for ov in compaction.origins {
            let len = codec::digest_entry_len(&ov);
            if used + len > budget && used > 0 {
                frames.push(std::mem::take(&mut current));
                used = 0;
            }
            used += len;
            current.0.push(ov);
        }
        for sum in compaction.sums {
            let len = codec::compacted_sum_len(&sum);
            if used + len > budget && used > 0 {
                frames.push(std::mem::take(&mut current));
                used = 0;
            }
            used += len;
            current.1.push(sum);
        }
        frames.push(current);
        frames
    }

    /// One part of an offer from `from`; the last one has the whole adopted.
    pub(super) fn gather_compaction(&mut self, from: &NodeName, part: Part) {
        let busy = self.compaction.gathering.len() >= MAX_GATHERINGS
            && !self.compaction.gathering.contains_key(from);
        if self.peers.binary_search(from).is_err() || busy {
            if part.part == 0 {
                self.stats.compaction_dropped += 1;
            }
            return;
        }
        let gathering = if part.part == 0 {
            self.compaction.gathering.insert(
                from.clone(),
                Gathering {
                    offer: part.offer,
                    next: 0,
                    parts: part.parts,
                    compaction: Compaction::default(),
                },
            );
            self.compaction.gathering.get_mut(from)
        } else {
            self.compaction.gathering.get_mut(from)
        };
        let Some(g) = gathering
            .filter(|g| g.offer == part.offer && g.next == part.part && g.parts == part.parts)
        else {
            if self.compaction.gathering.remove(from).is_some() {
                self.stats.compaction_dropped += 1;
                log::debug!("dropped {from}'s compaction offer: a part was missing");
            }
            return;
        };
        let held = g.compaction.origins.len() + g.compaction.sums.len();
        if held + part.origins.len() + part.sums.len() > MAX_GATHERED {
            self.compaction.gathering.remove(from);
            self.stats.compaction_dropped += 1;
            log::warn!("dropped {from}'s compaction offer: over {MAX_GATHERED} origins and sums");
            return;
        }
        g.compaction.origins.extend(part.origins);
        g.compaction.sums.extend(part.sums);
        g.next += 1;
        if g.next < g.parts {
            return;
        }
        let Some(g) = self.compaction.gathering.remove(from) else {
            return;
        };
        let own = g.compaction.origins.iter().find(|ov| ov.origin == self.me);
        let outcome = if let Some(ov) = own {
            // Taken for gone there for long: what this node writes under its origin past
            // that version is refused there, so it must write under a new one.
            self.outbox.push(Output::OwnOriginCompacted {
                from: from.clone(),
                version: ov.version,
            });
            Err("it lists this node's own origin as compacted".to_owned())
        } else {
            self.state.adopt(&g.compaction).map_err(|r| r.to_string())
        };
        match outcome {
            Ok(0) => {}
            Ok(origins) => {
                self.stats.compaction_adopted += origins as u64;
                self.outbox.push(Output::Adopted {
                    from: from.clone(),
                    origins,
                });
            }
            Err(reason) => {
                self.stats.compaction_refused += 1;
                self.outbox.push(Output::AdoptionRefused {
                    from: from.clone(),
                    reason,
                });
            }
        }
    }
}

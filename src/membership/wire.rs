//! Where membership messages become bytes and bytes become messages.
//!
//! The payload of a membership frame: a type byte, the message's fields, then its
//! records. Integers are LEB128 varints, the data incarnation and the digest a fixed 8
//! bytes (random, so a varint would not shrink them), strings a varint length then
//! UTF-8 — the helpers of `crate::codec`, so both codecs share one byte form. A record's
//! declarer is sent empty when it is the member itself, the common case.
//!
//! Decoding trusts nothing: every count is checked against the bytes that remain before
//! anything is allocated, every name against the naming rules, every address against
//! `codec::MAX_ADDR_BYTES`, every state tag against the four states; trailing bytes are
//! an error. Any byte string decodes to a message or a [`CodecError`].

use super::member::{Member, State, Update};
use super::message::Message;
use crate::codec::{put_str, put_varint, CodecError, Decoder, Measure, Sink, MAX_ADDR_BYTES};
use crate::crdt::MAX_NODE_NAME_BYTES;
use crate::member::NodeName;

const PING: u64 = 1;
const ACK: u64 = 2;
const PING_REQ: u64 = 3;
const NACK: u64 = 4;
const GOSSIP: u64 = 5;
const SYNC: u64 = 6;
const ANNOUNCE: u64 = 7;
const FULL: u64 = 8;

/// The smallest encoded record: a one-byte name, the incarnation, one-byte varints and
/// empty strings. Counts are bounded by `remaining bytes / MIN_UPDATE_LEN`.
pub const MIN_UPDATE_LEN: usize = 2 + 8 + 1 + 1 + 1 + 1 + 1 + 1;

/// Bytes a record count may take: room kept by senders that fill a budget.
pub const COUNT_LEN: usize = 3;

fn put_update(out: &mut impl Sink, u: &Update) {
    put_str(out, u.member.name.as_str());
    out.put(&u.member.incarnation.to_be_bytes());
    put_varint(out, u.member.started_at);
    put_str(out, &u.member.gossip_addr);
    put_str(out, &u.member.http_addr);
    put_varint(out, u.liveness);
    put_varint(out, u.state as u64);
    put_str(
        out,
        if u.by == u.member.name {
            ""
        } else {
            u.by.as_str()
        },
    );
}

fn put_updates(out: &mut impl Sink, updates: &[Update]) {
    put_varint(out, updates.len() as u64);
    for u in updates {
        put_update(out, u);
    }
}

pub(crate) fn put_message(out: &mut impl Sink, msg: &Message) {
    match msg {
        Message::Ping {
            seq,
            from,
            target,
            updates,
        } => {
            put_varint(out, PING);
            put_varint(out, *seq);
            put_str(out, from.as_str());
            put_str(out, target.as_str());
            put_updates(out, updates);
        }
        Message::Ack { seq, from, updates } => {
            put_varint(out, ACK);
            put_varint(out, *seq);
            put_str(out, from.as_str());
            put_updates(out, updates);
        }
        Message::PingReq {
            seq,
            from,
            target,
            target_addr,
            updates,
        } => {
            put_varint(out, PING_REQ);
            put_varint(out, *seq);
            put_str(out, from.as_str());
            put_str(out, target.as_str());
            put_str(out, target_addr);
            put_updates(out, updates);
        }
        Message::Nack { seq, from, updates } => {
            put_varint(out, NACK);
            put_varint(out, *seq);
            put_str(out, from.as_str());
            put_updates(out, updates);
        }
        Message::Gossip { from, updates } => {
            put_varint(out, GOSSIP);
            put_str(out, from.as_str());
            put_updates(out, updates);
        }
        Message::Sync {
            from,
            digest,
            updates,
        } => {
            put_varint(out, SYNC);
            put_str(out, from.as_str());
            out.put(&digest.to_be_bytes());
            put_updates(out, updates);
        }
        Message::Announce { from, updates } => {
            put_varint(out, ANNOUNCE);
            put_str(out, from.as_str());
            put_updates(out, updates);
        }
        Message::Full {
            from,
            want_reply,
            members,
        } => {
            put_varint(out, FULL);
            put_str(out, from.as_str());
            put_varint(out, *want_reply as u64);
            put_updates(out, members);
        }
    }
}

/// Appends the encoded message to `out`.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    out.reserve(encoded_len(msg));
    put_message(out, msg);
}

/// Bytes the encoded message takes.
pub fn encoded_len(msg: &Message) -> usize {
    let mut m = Measure(0);
    put_message(&mut m, msg);
    m.0
}

/// Bytes one record takes in a message.
pub fn update_len(u: &Update) -> usize {
    let mut m = Measure(0);
    put_update(&mut m, u);
    m.0
}

/// Decodes one whole message (nothing may follow it).
pub fn decode(bytes: &[u8]) -> Result<Message, CodecError> {
    let mut r = Decoder::new(bytes);
    let msg = match r.varint()? {
        PING => Message::Ping {
            seq: r.varint()?,
            from: name(&mut r)?,
            target: name(&mut r)?,
            updates: updates(&mut r)?,
        },
        ACK => Message::Ack {
            seq: r.varint()?,
            from: name(&mut r)?,
            updates: updates(&mut r)?,
        },
        PING_REQ => Message::PingReq {
            seq: r.varint()?,
            from: name(&mut r)?,
            target: name(&mut r)?,
            target_addr: r.string(MAX_ADDR_BYTES)?,
            updates: updates(&mut r)?,
        },
        NACK => Message::Nack {
            seq: r.varint()?,
            from: name(&mut r)?,
            updates: updates(&mut r)?,
        },
        GOSSIP => Message::Gossip {
            from: name(&mut r)?,
            updates: updates(&mut r)?,
        },
        SYNC => Message::Sync {
            from: name(&mut r)?,
            digest: r.u64_fixed()?,
            updates: updates(&mut r)?,
        },
        ANNOUNCE => Message::Announce {
            from: name(&mut r)?,
            updates: updates(&mut r)?,
        },
        FULL => Message::Full {
            from: name(&mut r)?,
            want_reply: match r.varint()? {
                0 => false,
                1 => true,
                _ => return Err(CodecError::Invalid("want_reply is not 0 or 1")),
            },
            members: updates(&mut r)?,
        },
        t => return Err(CodecError::UnknownType(t.min(u8::MAX as u64) as u8)),
    };
    if r.remaining() > 0 {
        return Err(CodecError::TrailingBytes(r.remaining()));
    }
    Ok(msg)
}

fn name(r: &mut Decoder) -> Result<NodeName, CodecError> {
    let name = r.string(MAX_NODE_NAME_BYTES)?;
    NodeName::new(&name).map_err(|e| CodecError::BadName(e.0))
}

fn updates(r: &mut Decoder) -> Result<Vec<Update>, CodecError> {
    let n = r.count(MIN_UPDATE_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(update(r)?);
    }
    Ok(out)
}

fn update(r: &mut Decoder) -> Result<Update, CodecError> {
    let member = Member {
        name: name(r)?,
        incarnation: r.u64_fixed()?,
        started_at: r.varint()?,
        gossip_addr: r.string(MAX_ADDR_BYTES)?,
        http_addr: r.string(MAX_ADDR_BYTES)?,
    };
    let liveness = r.varint()?;
    let state = *usize::try_from(r.varint()?)
        .ok()
        .and_then(|i| State::ALL.get(i))
        .ok_or(CodecError::Invalid("unknown member state"))?;
    let by = r.string(MAX_NODE_NAME_BYTES)?;
    let by = if by.is_empty() {
        member.name.clone()
    } else {
        NodeName::new(&by).map_err(|e| CodecError::BadName(e.0))?
    };
    Ok(Update {
        member,
        liveness,
        state,
        by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nn(name: &str) -> NodeName {
        NodeName::new(name).expect("a valid name")
    }

    fn arb_name() -> impl Strategy<Value = NodeName> {
        "[a-z0-9][a-z0-9.-]{0,20}".prop_map(|n| NodeName::new(&n).expect("a valid name"))
    }

    fn arb_update() -> impl Strategy<Value = Update> {
        (
            (arb_name(), any::<u64>(), any::<u64>(), ".{0,30}", ".{0,30}"),
            any::<u64>(),
            prop::sample::select(State::ALL.to_vec()),
            prop::option::of(arb_name()),
        )
            .prop_map(
                |((name, incarnation, started_at, g, h), liveness, state, by)| {
                    let by = by.unwrap_or_else(|| name.clone());
                    Update {
                        member: Member {
                            name,
                            incarnation,
                            started_at,
                            gossip_addr: g,
                            http_addr: h,
                        },
                        liveness,
                        state,
                        by,
                    }
                },
            )
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let ups = || prop::collection::vec(arb_update(), 0..5);
        prop_oneof![
            (any::<u64>(), arb_name(), arb_name(), ups()).prop_map(
                |(seq, from, target, updates)| {
                    Message::Ping {
                        seq,
                        from,
                        target,
                        updates,
                    }
                }
            ),
            (any::<u64>(), arb_name(), ups()).prop_map(|(seq, from, updates)| Message::Ack {
                seq,
                from,
                updates
            }),
            (any::<u64>(), arb_name(), arb_name(), ".{0,40}", ups()).prop_map(
                |(seq, from, target, target_addr, updates)| Message::PingReq {
                    seq,
                    from,
                    target,
                    target_addr,
                    updates
                }
            ),
            (any::<u64>(), arb_name(), ups()).prop_map(|(seq, from, updates)| Message::Nack {
                seq,
                from,
                updates
            }),
            (arb_name(), ups()).prop_map(|(from, updates)| Message::Gossip { from, updates }),
            (arb_name(), any::<u64>(), ups()).prop_map(|(from, digest, updates)| Message::Sync {
                from,
                digest,
                updates
            }),
            (arb_name(), ups()).prop_map(|(from, updates)| Message::Announce { from, updates }),
            (
                arb_name(),
                any::<bool>(),
                prop::collection::vec(arb_update(), 0..20)
            )
                .prop_map(|(from, want_reply, members)| Message::Full {
                    from,
                    want_reply,
                    members
                }),
        ]
    }

    fn bytes_of(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode(msg, &mut out);
        out
    }

    proptest! {
        #[test]
        fn every_message_round_trips_and_its_length_is_exact(msg in arb_message()) {
            let bytes = bytes_of(&msg);
            prop_assert_eq!(bytes.len(), encoded_len(&msg));
            let back = decode(&bytes).expect("decodes");
            prop_assert_eq!(&back, &msg);
            let sum: usize = msg.updates().iter().map(update_len).sum();
            prop_assert!(sum <= bytes.len());
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncated_or_flipped_messages_are_errors_or_messages(
            msg in arb_message(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let bytes = bytes_of(&msg);
            let at = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..at]).is_err(), "a prefix is never a whole message");
            let mut flipped = bytes.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 0x5a;
            let _ = decode(&flipped);
        }
    }

    #[test]
    fn a_huge_record_count_is_refused_before_allocating() {
        let mut bytes = Vec::new();
        put_varint(&mut bytes, FULL);
        put_str(&mut bytes, "a");
        put_varint(&mut bytes, 1);
        put_varint(&mut bytes, u64::MAX >> 1);
        assert_eq!(decode(&bytes), Err(CodecError::Truncated));
    }

    #[test]
    fn bad_fields_are_named_errors() {
        let ok = Message::Gossip {
            from: nn("a"),
            updates: vec![Update {
                member: Member {
                    name: nn("b"),
                    incarnation: 1,
                    started_at: 2,
                    gossip_addr: "b:1".into(),
                    http_addr: String::new(),
                },
                liveness: 0,
                state: State::Dead,
                by: nn("c"),
            }],
        };
        let good = bytes_of(&ok);
        assert_eq!(decode(&good), Ok(ok.clone()));

        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(CodecError::TrailingBytes(1)));

        let mut bad_state = good.clone();
        // The state tag sits just before the declarer (a 1-byte length and "c").
        let at = bad_state.len() - 3;
        bad_state[at] = 9;
        assert_eq!(
            decode(&bad_state),
            Err(CodecError::Invalid("unknown member state"))
        );

        let mut bad_name = Vec::new();
        put_varint(&mut bad_name, GOSSIP);
        put_str(&mut bad_name, "a\nb");
        put_varint(&mut bad_name, 0);
        assert!(matches!(decode(&bad_name), Err(CodecError::BadName(_))));

        let long_addr = Message::PingReq {
            seq: 1,
            from: nn("a"),
            target: nn("b"),
            target_addr: "x".repeat(MAX_ADDR_BYTES + 1),
            updates: vec![],
        };
        assert!(matches!(
            decode(&bytes_of(&long_addr)),
            Err(CodecError::BadName(_))
        ));

        assert_eq!(decode(&[100]), Err(CodecError::UnknownType(100)));
        assert_eq!(decode(&[]), Err(CodecError::Truncated));
    }

    #[test]
    fn a_record_from_its_member_sends_the_declarer_empty() {
        let u = Update {
            member: Member {
                name: nn("node-7"),
                incarnation: 1,
                started_at: 1,
                gossip_addr: String::new(),
                http_addr: String::new(),
            },
            liveness: 0,
            state: State::Alive,
            by: nn("node-7"),
        };
        let other = Update {
            by: nn("node-8"),
            ..u.clone()
        };
        assert_eq!(update_len(&other), update_len(&u) + "node-8".len());
    }
}

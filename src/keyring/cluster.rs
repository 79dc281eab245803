//! The cluster's keyring, I/O-free: one versioned record every member converges to,
//! which keys each member says it holds, and the operator's commands.
//!
//! The record is the whole keyring (keys in order, the primary first) plus whether
//! encryption is enforced, stamped with a version: a Lamport counter and the name of the
//! node that made it. A command (`install`, `use`, `remove`, `enforce`) makes a new record
//! one above the highest counter seen; a member that sees a newer record adopts it whole.
//! A keyring read from a file that never saw a command has counter 0, which never spreads:
//! each node keeps its own file until the first command.
//!
//! Members exchange [`KeysMessage`]s on keyed connections only: an advert (the sender's
//! version, mode and key ids) every second to one random member, and the whole record to
//! every live member when it changes, or to a member whose advert shows it behind. So a
//! member that was down during a command catches up as soon as it can talk to anyone:
//! a keyed handshake offers every key a node holds, and it still holds the keys it had.
//!
//! The mode follows the record: a transition record gives `open`; an enforced one gives
//! `keyed` right after the command, then `strict` once every live member says it sends
//! keyed, so no member's plaintext is refused while the change spreads.

use super::shared::{Active, Mode};
use super::{Key, KeyId, Keyring, KeyringError};
use crate::member::NodeName;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// A record's version: a Lamport counter, then the name of the node that made it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub counter: u64,
    pub by: NodeName,
}

impl Version {
    /// Whether this version replaces `other`. Counter 0 (a keyring file never changed
    /// by a command) replaces nothing.
    pub fn replaces(&self, other: &Version) -> bool {
        self.counter > 0 && self > other
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.counter, self.by)
    }
}

/// The record every member converges to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub version: Version,
    pub keyring: Keyring,
    /// Encryption enforced (`strict` once every member sends keyed); otherwise the
    /// transition (`open`).
    pub enforced: bool,
}

/// The line of a keyring file that holds its record's version.
const VERSION_LINE: &str = "# version ";

impl Record {
    /// The keyring file's text: the keys (primary first) and a comment line with the
    /// version, which a node that starts from the file reads back.
    pub fn to_file_text(&self) -> String {
        format!(
            "{}{VERSION_LINE}{} {} {}\n",
            self.keyring.to_text(),
            self.version.counter,
            if self.enforced {
                "enforced"
            } else {
                "transition"
            },
            self.version.by
        )
    }

    /// Reads a keyring file. A file without a version line (written by hand) is at
    /// version 0 by `me`, enforced unless `transition` (`--keyring-transition`).
    pub fn from_file_text(text: &str, me: &NodeName, transition: bool) -> Result<Record, String> {
        let keyring = Keyring::parse(text).map_err(|e| e.to_string())?;
        let Some(line) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(VERSION_LINE))
        else {
            return Ok(Record {
                version: Version {
                    counter: 0,
                    by: me.clone(),
                },
                keyring,
                enforced: !transition,
            });
        };
        let bad = || format!("bad version line {line:?}");
        let mut parts = line.splitn(3, ' ');
        let counter = parts.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let enforced = match parts.next() {
            Some("enforced") => true,
            Some("transition") => false,
            _ => return Err(bad()),
        };
        let by = parts
            .next()
            .and_then(|n| NodeName::new(n).ok())
            .ok_or_else(bad)?;
        Ok(Record {
            version: Version { counter, by },
            keyring,
            enforced,
        })
    }
}

/// What members tell each other about their keyring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysMessage {
    pub from: NodeName,
    /// The sender's mode.
    pub mode: Mode,
    pub version: Version,
    pub enforced: bool,
    /// The sender's key ids, its primary first.
    pub held: Vec<KeyId>,
    /// The whole keyring, matching `held`, when the record is sent; empty in an advert.
    pub keys: Vec<Key>,
}

/// What a member last said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Holding {
    held: Vec<KeyId>,
    mode: Mode,
    version: Version,
}

/// Where the event loop sends a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Send {
    To(NodeName, KeysMessage),
    /// To every live member but this node.
    Everyone(KeysMessage),
}

/// What an input did: messages to send, and whether the keys or mode in force changed
/// (the shared keyring must be updated and, if `record_changed`, the file saved).
#[derive(Debug, Default)]
pub struct Reaction {
    pub sends: Vec<Send>,
    pub active_changed: bool,
    pub record_changed: bool,
}

/// Why a command was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    Keyring(KeyringError),
    /// Live members that do not hold (or have not said they hold) the key a command needs.
    NotHeld {
        key: KeyId,
        members: Vec<String>,
    },
    /// Live members that have not said they hold keys: they would be cut off.
    Unkeyed(Vec<String>),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Keyring(e) => e.fmt(f),
            CommandError::NotHeld { key, members } => write!(
                f,
                "live member(s) {} do not hold key {key} (yet): install it first and wait until \
                 `gctr keys list` shows every member holding it",
                members.join(", ")
            ),
            CommandError::Unkeyed(members) => write!(
                f,
                "live member(s) {} have not reported a keyring: restart them with --keyring \
                 (and --keyring-transition) first",
                members.join(", ")
            ),
        }
    }
}

/// One key as `gctr keys list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    /// The key this node seals with.
    pub primary: bool,
    /// Live members (this node included) that say they hold it.
    pub members: usize,
    /// Live members that say they seal with it.
    pub primary_members: usize,
}

/// `GET /keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysView {
    pub mode: Mode,
    pub enforced: bool,
    pub version: u64,
    pub version_by: String,
    /// Live members, this node included.
    pub live_members: usize,
    /// Every key this node or a live member holds, this node's first.
    pub keys: Vec<KeyView>,
    /// Live members that have not said which keys they hold.
    pub unreported: Vec<String>,
    /// Live members whose keyring is older than this node's.
    pub behind: Vec<String>,
}

/// An operator's command (`gctr keys ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Install(Key),
    Use(KeyId),
    Remove(KeyId),
    Enforce,
}

/// The cluster keyring as one node holds it.
#[derive(Clone)]
pub struct ClusterKeys {
    me: NodeName,
    record: Record,
    mode: Mode,
    holdings: HashMap<NodeName, Holding>,
    /// The highest version counter seen, for the next command's.
    max_counter: u64,
}

impl ClusterKeys {
    /// Starts from the record read at start-up (its mode `strict` when enforced: a
    /// restarted node needs no grace period, its members switched long ago).
    pub fn new(me: NodeName, record: Record) -> ClusterKeys {
        let mode = if record.enforced {
            Mode::Strict
        } else {
            Mode::Open
        };
        ClusterKeys {
            me,
            max_counter: record.version.counter,
            record,
            mode,
            holdings: HashMap::new(),
        }
    }

    pub fn active(&self) -> Active {
        Active {
            keyring: self.record.keyring.clone(),
            mode: self.mode,
        }
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn message(&self, with_keys: bool) -> KeysMessage {
        KeysMessage {
            from: self.me.clone(),
            mode: self.mode,
            version: self.record.version.clone(),
            enforced: self.record.enforced,
            held: self.record.keyring.ids(),
            keys: if with_keys {
                self.record.keyring.keys().to_vec()
            } else {
                Vec::new()
            },
        }
    }

    /// The periodic advert, to the live member `to`.
    pub fn advert_to(&self, to: NodeName) -> Send {
        Send::To(to, self.message(false))
    }

    /// A member joined or came back: tell it where this node stands.
    pub fn greet(&self, member: NodeName) -> Send {
        self.advert_to(member)
    }

    /// A message from a member; `live` are the live members' names (this node's too).
    pub fn handle(&mut self, msg: KeysMessage, live: &[NodeName]) -> Reaction {
        let mut reaction = Reaction::default();
        if msg.from == self.me {
            return reaction;
        }
        self.max_counter = self.max_counter.max(msg.version.counter);
        self.holdings.insert(
            msg.from.clone(),
            Holding {
                held: msg.held.clone(),
                mode: msg.mode,
                version: msg.version.clone(),
            },
        );
        if msg.version.replaces(&self.record.version) {
            match record_of(&msg) {
                Some(record) => self.adopt(record, &mut reaction),
                // An advert of a newer record: answer with ours, so the sender sends it.
                None => reaction
                    .sends
                    .push(Send::To(msg.from.clone(), self.message(false))),
            }
        } else if self.record.version.replaces(&msg.version) {
            reaction
                .sends
                .push(Send::To(msg.from.clone(), self.message(true)));
        }
        self.progress(live, &mut reaction);
        reaction
    }

    /// Rechecks the mode after membership changed (a member that never switched left).
    pub fn members_changed(&mut self, live: &[NodeName]) -> Reaction {
        let mut reaction = Reaction::default();
        self.progress(live, &mut reaction);
        reaction
    }

    fn adopt(&mut self, record: Record, reaction: &mut Reaction) {
        let mode = match (record.enforced, self.mode) {
            (false, _) => Mode::Open,
            (true, Mode::Open) => Mode::Keyed,
            (true, m) => m,
        };
        self.record = record;
        self.mode = mode;
        reaction.active_changed = true;
        reaction.record_changed = true;
        reaction.sends.push(Send::Everyone(self.message(true)));
    }

    /// `keyed` becomes `strict` once every other live member says it sends keyed.
    fn progress(&mut self, live: &[NodeName], reaction: &mut Reaction) {
        if self.mode != Mode::Keyed {
            return;
        }
        let all_keyed = live
            .iter()
            .filter(|n| **n != self.me)
            .all(|n| self.holdings.get(n).is_some_and(|h| h.mode >= Mode::Keyed));
        if all_keyed {
            self.mode = Mode::Strict;
            reaction.active_changed = true;
            reaction.sends.push(Send::Everyone(self.message(false)));
        }
    }

    /// Carries out an operator's command; `live` are the live members' names.
    pub fn command(
        &mut self,
        command: Command,
        live: &[NodeName],
    ) -> Result<Reaction, CommandError> {
        match command {
            Command::Install(key) => self.install(key),
            Command::Use(id) => self.use_key(id, live),
            Command::Remove(id) => self.remove(id),
            Command::Enforce => self.enforce(live),
        }
    }

    /// Installs `key` cluster-wide (it decrypts at once; it seals once made primary).
    pub fn install(&mut self, key: Key) -> Result<Reaction, CommandError> {
        let mut keyring = self.record.keyring.clone();
        keyring.install(key).map_err(CommandError::Keyring)?;
        Ok(self.new_record(keyring, self.record.enforced))
    }

    /// Makes `id` the primary key cluster-wide; every live member must hold it.
    pub fn use_key(&mut self, id: KeyId, live: &[NodeName]) -> Result<Reaction, CommandError> {
        let mut keyring = self.record.keyring.clone();
        keyring.use_key(id).map_err(CommandError::Keyring)?;
        let missing = self.not_holding(id, live);
        if !missing.is_empty() {
            return Err(CommandError::NotHeld {
                key: id,
                members: missing,
            });
        }
        Ok(self.new_record(keyring, self.record.enforced))
    }

    /// Removes `id` cluster-wide; sessions derived from it close.
    pub fn remove(&mut self, id: KeyId) -> Result<Reaction, CommandError> {
        let mut keyring = self.record.keyring.clone();
        keyring.remove(id).map_err(CommandError::Keyring)?;
        Ok(self.new_record(keyring, self.record.enforced))
    }

    /// Ends the transition cluster-wide: every live member must hold the primary key.
    pub fn enforce(&mut self, live: &[NodeName]) -> Result<Reaction, CommandError> {
        let unkeyed: Vec<String> = self
            .others(live)
            .filter(|n| !self.holdings.contains_key(*n))
            .map(|n| n.to_string())
            .collect();
        if !unkeyed.is_empty() {
            return Err(CommandError::Unkeyed(unkeyed));
        }
        let primary = self.record.keyring.primary().id();
        let missing = self.not_holding(primary, live);
        if !missing.is_empty() {
            return Err(CommandError::NotHeld {
                key: primary,
                members: missing,
            });
        }
        Ok(self.new_record(self.record.keyring.clone(), true))
    }

    fn others<'a>(&'a self, live: &'a [NodeName]) -> impl Iterator<Item = &'a NodeName> + 'a {
        live.iter().filter(move |n| **n != self.me)
    }

    fn not_holding(&self, id: KeyId, live: &[NodeName]) -> Vec<String> {
        self.others(live)
            .filter(|n| !self.holdings.get(*n).is_some_and(|h| h.held.contains(&id)))
            .map(|n| n.to_string())
            .collect()
    }

    fn new_record(&mut self, keyring: Keyring, enforced: bool) -> Reaction {
        self.max_counter += 1;
        let record = Record {
            version: Version {
                counter: self.max_counter,
                by: self.me.clone(),
            },
            keyring,
            enforced,
        };
        let mut reaction = Reaction::default();
        self.adopt(record, &mut reaction);
        reaction
    }

    /// What `gctr keys list` shows; `live` are the live members' names.
    pub fn list(&self, live: &[NodeName]) -> KeysView {
        let mine = self.record.keyring.ids();
        let reports: Vec<&Holding> = self
            .others(live)
            .filter_map(|n| self.holdings.get(n))
            .collect();
        let mut ids = mine.clone();
        for h in &reports {
            for id in &h.held {
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
        }
        let keys = ids
            .iter()
            .map(|id| KeyView {
                id: id.to_string(),
                primary: mine.first() == Some(id),
                members: usize::from(mine.contains(id))
                    + reports.iter().filter(|h| h.held.contains(id)).count(),
                primary_members: usize::from(mine.first() == Some(id))
                    + reports
                        .iter()
                        .filter(|h| h.held.first() == Some(id))
                        .count(),
            })
            .collect();
        let names = |keep: &dyn Fn(Option<&Holding>) -> bool| -> Vec<String> {
            self.others(live)
                .filter(|n| keep(self.holdings.get(*n)))
                .map(|n| n.to_string())
                .collect()
        };
        KeysView {
            mode: self.mode,
            enforced: self.record.enforced,
            version: self.record.version.counter,
            version_by: self.record.version.by.to_string(),
            live_members: self.others(live).count() + 1,
            keys,
            unreported: names(&|h| h.is_none()),
            behind: names(&|h| h.is_some_and(|h| self.record.version.replaces(&h.version))),
        }
    }

    /// Forgets what a member said (it left, died or was forgotten).
    pub fn forget(&mut self, name: &NodeName) {
        self.holdings.remove(name);
    }
}

/// The record a message carries, if it carries a consistent one.
fn record_of(msg: &KeysMessage) -> Option<Record> {
    let first = msg.keys.first()?;
    let mut keyring = Keyring::new(first.clone());
    for key in &msg.keys[1..] {
        keyring.install(key.clone()).ok()?;
    }
    if keyring.ids() != msg.held {
        return None;
    }
    Some(Record {
        version: msg.version.clone(),
        keyring,
        enforced: msg.enforced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KEY_LEN;

    fn key(b: u8) -> Key {
        Key([b; KEY_LEN])
    }

    fn name(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    fn node(n: &str, keys: &[u8], enforced: bool) -> ClusterKeys {
        let mut ring = Keyring::new(key(keys[0]));
        for b in &keys[1..] {
            ring.install(key(*b)).unwrap();
        }
        ClusterKeys::new(
            name(n),
            Record {
                version: Version {
                    counter: 0,
                    by: name(n),
                },
                keyring: ring,
                enforced,
            },
        )
    }

    /// Delivers every message until none is left; `live` is every node.
    fn settle(nodes: &mut [ClusterKeys], mut queue: Vec<(NodeName, Send)>) {
        let live: Vec<NodeName> = nodes.iter().map(|n| n.me.clone()).collect();
        while let Some((from, send)) = queue.pop() {
            let (targets, msg) = match send {
                Send::To(to, msg) => (vec![to], msg),
                Send::Everyone(msg) => {
                    (live.iter().filter(|n| **n != from).cloned().collect(), msg)
                }
            };
            for t in targets {
                let n = nodes.iter_mut().find(|n| n.me == t).unwrap();
                let r = n.handle(msg.clone(), &live);
                queue.extend(r.sends.into_iter().map(|s| (t.clone(), s)));
            }
        }
    }

    fn adverts(nodes: &[ClusterKeys]) -> Vec<(NodeName, Send)> {
        let mut out = Vec::new();
        for a in nodes {
            for b in nodes.iter().filter(|b| b.me != a.me) {
                out.push((a.me.clone(), a.advert_to(b.me.clone())));
            }
        }
        out
    }

    #[test]
    fn install_use_remove_spread_and_list_counts_holders() {
        let mut nodes = vec![
            node("a", &[1], true),
            node("b", &[1], true),
            node("c", &[1], true),
        ];
        let live: Vec<NodeName> = nodes.iter().map(|n| n.me.clone()).collect();
        let ads = adverts(&nodes);
        settle(&mut nodes, ads);
        let r = nodes[0].install(key(2)).unwrap();
        assert!(r.record_changed && r.active_changed);
        settle(
            &mut nodes,
            r.sends.into_iter().map(|s| (name("a"), s)).collect(),
        );
        let list = nodes[1].list(&live);
        assert_eq!(list.keys.len(), 2);
        assert!(list.keys.iter().all(|k| k.members == 3));
        let r = nodes[2].use_key(key(2).id(), &live).unwrap();
        settle(
            &mut nodes,
            r.sends.into_iter().map(|s| (name("c"), s)).collect(),
        );
        let r = nodes[1].remove(key(1).id()).unwrap();
        settle(
            &mut nodes,
            r.sends.into_iter().map(|s| (name("b"), s)).collect(),
        );
        for n in &nodes {
            assert_eq!(n.record().keyring.ids(), vec![key(2).id()]);
            let list = n.list(&live);
            assert_eq!(list.keys.len(), 1);
            assert_eq!((list.keys[0].members, list.keys[0].primary_members), (3, 3));
            assert_eq!(list.version, 3);
        }
    }

    #[test]
    fn a_member_that_missed_commands_catches_up_from_adverts() {
        let mut nodes = vec![node("a", &[1], true), node("b", &[1], true)];
        let live: Vec<NodeName> = nodes.iter().map(|n| n.me.clone()).collect();
        let ads = adverts(&nodes);
        settle(&mut nodes, ads);
        // b misses both commands' broadcasts.
        nodes[0].install(key(2)).unwrap();
        nodes[0].install(key(3)).unwrap();
        assert_eq!(nodes[0].list(&live).behind, vec!["b".to_owned()]);
        let ads = adverts(&nodes);
        settle(&mut nodes, ads);
        assert_eq!(
            nodes[1].record().keyring.ids(),
            vec![key(1).id(), key(2).id(), key(3).id()]
        );
        assert!(nodes[0].list(&live).behind.is_empty());
    }

    #[test]
    fn commands_needing_every_member_are_refused_with_the_names() {
        let mut nodes = [node("a", &[1], true), node("b", &[1], true)];
        let live: Vec<NodeName> = nodes.iter().map(|n| n.me.clone()).collect();
        assert_eq!(
            nodes[0].enforce(&live).err(),
            Some(CommandError::Unkeyed(vec!["b".into()]))
        );
        nodes[0].install(key(2)).unwrap();
        assert!(matches!(
            nodes[0].use_key(key(2).id(), &live),
            Err(CommandError::NotHeld { .. })
        ));
        assert_eq!(
            nodes[1].remove(key(1).id()).err(),
            Some(CommandError::Keyring(KeyringError::RemovePrimary(
                key(1).id()
            )))
        );
        assert_eq!(nodes[1].record().version.counter, 0, "nothing changed");
    }

    #[test]
    fn enforcing_goes_keyed_then_strict_once_everyone_sends_keyed() {
        let mut nodes = vec![
            node("a", &[1], false),
            node("b", &[1], false),
            node("c", &[1], false),
        ];
        let live: Vec<NodeName> = nodes.iter().map(|n| n.me.clone()).collect();
        assert!(nodes.iter().all(|n| n.mode() == Mode::Open));
        let ads = adverts(&nodes);
        settle(&mut nodes, ads);
        let r = nodes[0].enforce(&live).unwrap();
        assert_eq!(nodes[0].mode(), Mode::Keyed, "the others have not switched");
        settle(
            &mut nodes,
            r.sends.into_iter().map(|s| (name("a"), s)).collect(),
        );
        assert!(nodes.iter().all(|n| n.mode() == Mode::Strict));
    }

    #[test]
    fn a_record_round_trips_through_its_file_and_a_plain_file_is_version_0() {
        let mut a = node("a", &[1, 2], false);
        let live = vec![name("a")];
        a.use_key(key(2).id(), &live).unwrap();
        a.enforce(&live).unwrap();
        let text = a.record().to_file_text();
        assert_eq!(
            Record::from_file_text(&text, &name("other"), true).as_ref(),
            Ok(a.record())
        );
        let plain = Keyring::new(key(1)).to_text();
        let r = Record::from_file_text(&plain, &name("b"), true).unwrap();
        assert_eq!((r.version.counter, r.enforced), (0, false));
        assert!(Record::from_file_text(
            &format!("{plain}# version x enforced a\n"),
            &name("b"),
            false
        )
        .is_err());
    }

    #[test]
    fn unversioned_files_never_spread_and_forged_records_are_ignored() {
        let mut a = node("a", &[1], true);
        let b = node("b", &[1, 2], true);
        let live = vec![name("a"), name("b")];
        let mut full = b.message(true);
        let r = a.handle(full.clone(), &live);
        assert!(!r.record_changed && r.sends.is_empty());
        // A newer version whose keys do not match its ids is not adopted.
        full.version.counter = 5;
        full.held.reverse();
        let r = a.handle(full, &live);
        assert!(!r.record_changed);
        assert_eq!(a.record().keyring.ids(), vec![key(1).id()]);
    }
}

//! The member table behind the discovery server: who is registered, where, and when it
//! was last heard from. Pure: the caller passes `now` (time since some fixed start), so
//! TTL expiry is tested with a virtual clock and the server owns the only clock read.
//!
//! A member is live while `now - last_seen <= ttl`. Registration and heartbeat are the
//! same upsert, so a restarted server refills from heartbeats alone. The table has a
//! cap on members so a flood of made-up names cannot exhaust memory; refreshing an
//! existing member always succeeds.

use super::api::{Member, NodeInfo};
use crate::status::millis;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Members a table holds unless configured otherwise.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;

#[derive(Debug)]
pub struct Registry {
    ttl: Duration,
    max_members: usize,
    members: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    info: NodeInfo,
    last_seen: Duration,
}

/// What an upsert did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// A name not in the table joined.
    Joined,
    /// A known member, same addresses, was refreshed.
    Refreshed,
    /// A known name came back with different addresses (e.g. restarted on other ports);
    /// the new ones replace these.
    Moved { previous: NodeInfo },
}

/// The table is at its cap and the name is new: nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Full {
    pub max_members: usize,
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "discovery is full ({} members); not adding another",
            self.max_members
        )
    }
}

impl Registry {
    pub fn new(ttl: Duration, max_members: usize) -> Registry {
        Registry {
            ttl,
            max_members,
            members: BTreeMap::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Members the table takes before it refuses new names.
    pub fn max_members(&self) -> usize {
        self.max_members
    }

    /// Members in the table, counting any past their TTL that `expire` has not yet dropped.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Registers or refreshes `info` as seen at `now`.
    pub fn upsert(&mut self, now: Duration, info: NodeInfo) -> Result<Upsert, Full> {
        if let Some(entry) = self.members.get_mut(&info.name) {
            entry.last_seen = entry.last_seen.max(now);
            if entry.info == info {
                return Ok(Upsert::Refreshed);
            }
            let previous = std::mem::replace(&mut entry.info, info);
            return Ok(Upsert::Moved { previous });
        }
        if self.members.len() >= self.max_members {
            return Err(Full {
                max_members: self.max_members,
            });
        }
        self.members.insert(
            info.name.clone(),
            Entry {
                info,
                last_seen: now,
            },
        );
        Ok(Upsert::Joined)
    }

    /// Removes the member named `name` and returns it, if there was one.
    pub fn remove(&mut self, name: &str) -> Option<NodeInfo> {
        self.members.remove(name).map(|e| e.info)
    }

    /// Drops every member not heard from for longer than the TTL and returns them, so
    /// the caller can log each expiry once.
    pub fn expire(&mut self, now: Duration) -> Vec<NodeInfo> {
        let ttl = self.ttl;
        let mut gone = Vec::new();
        self.members.retain(|_, entry| {
            let alive = now.saturating_sub(entry.last_seen) <= ttl;
            if !alive {
                gone.push(entry.info.clone());
            }
            alive
        });
        gone
    }

    /// The live members at `now`, sorted by name, with how long ago each was seen.
    pub fn members(&self, now: Duration) -> Vec<Member> {
        self.members
            .values()
            .filter(|e| now.saturating_sub(e.last_seen) <= self.ttl)
            .map(|e| Member {
                name: e.info.name.clone(),
                addr: e.info.addr,
                http: e.info.http,
                seen_ms_ago: millis(now.saturating_sub(e.last_seen)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, port: u16) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            http: format!("127.0.0.1:{}", port + 1000).parse().unwrap(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn names(reg: &Registry, now: Duration) -> Vec<String> {
        reg.members(now).into_iter().map(|m| m.name).collect()
    }

    #[test]
    fn register_lists_members_sorted_by_name_with_age() {
        let mut reg = Registry::new(ms(5000), 10);
        assert_eq!(reg.upsert(ms(0), node("b", 9001)), Ok(Upsert::Joined));
        assert_eq!(reg.upsert(ms(100), node("a", 9000)), Ok(Upsert::Joined));
        let members = reg.members(ms(300));
        assert_eq!(names(&reg, ms(300)), ["a", "b"]);
        assert_eq!(members[0].seen_ms_ago, 200);
        assert_eq!(members[1].seen_ms_ago, 300);
        assert_eq!(members[0].addr, node("a", 9000).addr);
        assert_eq!(members[0].http, node("a", 9000).http);
    }

    #[test]
    fn heartbeat_is_an_upsert_that_refreshes_or_moves() {
        let mut reg = Registry::new(ms(1000), 10);
        assert_eq!(reg.upsert(ms(0), node("a", 9000)), Ok(Upsert::Joined));
        assert_eq!(reg.upsert(ms(800), node("a", 9000)), Ok(Upsert::Refreshed));
        assert_eq!(reg.members(ms(900))[0].seen_ms_ago, 100);
        assert_eq!(
            reg.upsert(ms(900), node("a", 9500)),
            Ok(Upsert::Moved {
                previous: node("a", 9000)
            })
        );
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.members(ms(900))[0].addr, node("a", 9500).addr);
    }

    #[test]
    fn a_late_heartbeat_never_moves_last_seen_backwards() {
        let mut reg = Registry::new(ms(1000), 10);
        reg.upsert(ms(500), node("a", 9000)).unwrap();
        reg.upsert(ms(200), node("a", 9000)).unwrap();
        assert_eq!(reg.members(ms(600))[0].seen_ms_ago, 100);
    }

    #[test]
    fn deregister_removes_once() {
        let mut reg = Registry::new(ms(1000), 10);
        reg.upsert(ms(0), node("a", 9000)).unwrap();
        reg.upsert(ms(0), node("b", 9001)).unwrap();
        assert_eq!(reg.remove("a"), Some(node("a", 9000)));
        assert_eq!(reg.remove("a"), None);
        assert_eq!(names(&reg, ms(1)), ["b"]);
    }

    #[test]
    fn a_member_expires_only_after_missing_heartbeats_for_the_ttl() {
        let mut reg = Registry::new(ms(1000), 10);
        reg.upsert(ms(0), node("a", 9000)).unwrap();
        reg.upsert(ms(0), node("b", 9001)).unwrap();
        reg.upsert(ms(600), node("b", 9001)).unwrap();
        assert!(reg.expire(ms(1000)).is_empty(), "age == ttl is still live");
        assert_eq!(names(&reg, ms(1000)), ["a", "b"]);
        assert_eq!(names(&reg, ms(1001)), ["b"], "listing hides the stale one");
        assert_eq!(reg.expire(ms(1001)), vec![node("a", 9000)]);
        assert!(
            reg.expire(ms(1001)).is_empty(),
            "each expiry is reported once"
        );
        assert_eq!(reg.expire(ms(1601)), vec![node("b", 9001)]);
        assert!(reg.is_empty());
    }

    #[test]
    fn an_expired_member_rejoins_with_its_next_heartbeat() {
        let mut reg = Registry::new(ms(1000), 10);
        reg.upsert(ms(0), node("a", 9000)).unwrap();
        reg.expire(ms(2000));
        assert_eq!(reg.upsert(ms(2000), node("a", 9000)), Ok(Upsert::Joined));
        assert_eq!(names(&reg, ms(2000)), ["a"]);
    }

    #[test]
    fn the_cap_refuses_new_names_but_refreshes_known_ones() {
        let mut reg = Registry::new(ms(1000), 2);
        reg.upsert(ms(0), node("a", 9000)).unwrap();
        reg.upsert(ms(0), node("b", 9001)).unwrap();
        assert_eq!(
            reg.upsert(ms(10), node("c", 9002)),
            Err(Full { max_members: 2 })
        );
        assert_eq!(reg.upsert(ms(10), node("a", 9000)), Ok(Upsert::Refreshed));
        assert_eq!(names(&reg, ms(10)), ["a", "b"]);
        reg.remove("b");
        assert_eq!(reg.upsert(ms(20), node("c", 9002)), Ok(Upsert::Joined));
    }
}

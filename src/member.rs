//! Who a peer is: the member identity every table names a peer by.
//!
//! A [`NodeName`] is unique in a cluster and is the key of every per-peer table (the
//! engine's peer set, the node's peer table, its outbound links). A [`Member`] adds what
//! identifies one run of that node and how to reach it: the data incarnation (so the
//! member's origin is known), and its gossip and HTTP addresses. A node that lost its
//! data comes back under the same name with a new incarnation: a new origin, the same
//! member slot.

use crate::crdt::{validate_node_name, NameError, Origin};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// A node's name: 1 to 128 bytes of UTF-8 without control characters. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(Arc<str>);

impl NodeName {
    /// Checks the naming rules.
    pub fn new(name: &str) -> Result<NodeName, NameError> {
        validate_node_name(name)?;
        Ok(NodeName(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = NameError;

    fn try_from(name: String) -> Result<NodeName, NameError> {
        NodeName::new(&name)
    }
}

impl TryFrom<&str> for NodeName {
    type Error = NameError;

    fn try_from(name: &str) -> Result<NodeName, NameError> {
        NodeName::new(name)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> String {
        name.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for NodeName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// One run of a node: its name, its data incarnation, when it started, and where to
/// reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub name: NodeName,
    /// The random u64 of the node's data directory (or of this start, without one).
    pub incarnation: u64,
    /// When this run of the node started, in milliseconds since the Unix epoch (wall
    /// clock). Only compared between runs of the same name, to tell the newer one.
    pub started_at: u64,
    /// Where peers send gossip (`host:port`): probes, gossip and replies go here.
    pub gossip_addr: String,
    /// Where clients reach the node's HTTP API (`host:port`).
    pub http_addr: String,
}

/// One run of a node: a process started under a name. A restart (with the same data or
/// with new data) is a new run; the later run wins over every record of an earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Run {
    pub started_at: u64,
    pub incarnation: u64,
}

impl Member {
    /// The origin this member writes its own changes under.
    pub fn origin(&self) -> Origin {
        Origin::new(self.name.as_str(), self.incarnation)
    }

    pub fn run(&self) -> Run {
        Run {
            started_at: self.started_at,
            incarnation: self.incarnation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_naming_rules_and_compare_as_strings() {
        assert!(NodeName::new("").is_err());
        assert!(NodeName::new("a\nb").is_err());
        assert!(NodeName::new(&"x".repeat(129)).is_err());
        let a = NodeName::new("a").unwrap();
        assert_eq!(a.as_str(), "a");
        assert!(a < NodeName::new("b").unwrap());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"a\"");
        assert!(serde_json::from_str::<NodeName>("\"\"").is_err());
    }

    #[test]
    fn a_member_writes_under_its_name_and_incarnation() {
        let m = Member {
            name: NodeName::new("n1").unwrap(),
            incarnation: 0x2a,
            started_at: 1,
            gossip_addr: "127.0.0.1:9000".into(),
            http_addr: "127.0.0.1:9010".into(),
        };
        assert_eq!(m.origin(), Origin::new("n1", 0x2a));
    }
}

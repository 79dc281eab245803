//! The node's keyring at run time: the cluster keyring (`crate::keyring::cluster`) kept
//! in the keyring file, the probe lane's datagrams sealed and opened, and the shared
//! keyring that the gossip readers and writers consult kept up to date. Owned by the
//! event loop, which sends the messages it returns.

use crate::codec;
use crate::keyring::cluster::{
    ClusterKeys, Command, CommandError, KeysMessage, KeysView, Reaction, Send,
};
use crate::keyring::datagram::{DatagramError, DatagramOpener, DatagramSealer};
use crate::keyring::shared::{Rejection, SharedKeyring};
use crate::member::NodeName;
use crate::status::KeyringStatus;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct NodeKeys {
    cluster: ClusterKeys,
    shared: SharedKeyring,
    /// The keyring file, rewritten at every change of the record.
    file: PathBuf,
    sealer: DatagramSealer,
    opener: DatagramOpener,
}

/// Why a command failed: refused (nothing changed), or the file could not be written
/// (nothing changed either).
#[derive(Debug)]
pub enum KeysCommandError {
    Refused(CommandError),
    Save(String),
}

impl NodeKeys {
    pub fn new(cluster: ClusterKeys, shared: SharedKeyring, file: PathBuf) -> io::Result<NodeKeys> {
        Ok(NodeKeys {
            cluster,
            shared,
            file,
            sealer: DatagramSealer::new()?,
            opener: DatagramOpener::default(),
        })
    }

    /// A probe-lane datagram as it goes out: sealed, unless the mode is `open`.
    pub fn seal_datagram(&mut self, plain: Vec<u8>) -> Vec<u8> {
        if !self.cluster.mode().always_seals() {
            return plain;
        }
        self.sealer
            .seal(&self.cluster.record().keyring, now_micros(), &plain)
    }

    /// A datagram's plaintext, or `None` when refused (counted and logged).
    pub fn open_datagram(&mut self, from: SocketAddr, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let peer = from.to_string();
        if bytes.starts_with(&codec::MAGIC) {
            if self.cluster.mode().accepts_plaintext() {
                return Some(bytes);
            }
            let why = "a plaintext datagram; this node accepts sealed datagrams only";
            self.shared.reject(Rejection::UdpPlaintext, &peer, why);
            return None;
        }
        let keyring = &self.cluster.record().keyring;
        match self.opener.open(keyring, now_micros(), &bytes) {
            Ok(plain) => Some(plain),
            Err(e) => {
                let what = match e {
                    DatagramError::TooShort | DatagramError::NotAuthentic => {
                        Rejection::UdpNotAuthentic
                    }
                    DatagramError::Stale => Rejection::UdpStale,
                    DatagramError::Replayed => Rejection::UdpReplayed,
                    DatagramError::TooManyRuns => Rejection::UdpTooManyRuns,
                };
                self.shared.reject(what, &peer, &e.to_string());
                None
            }
        }
    }

    /// A keyring message from a member; `live` are the live members' names.
    pub fn handle(&mut self, msg: KeysMessage, live: &[NodeName]) -> Vec<Send> {
        let from = msg.from.clone();
        let before = self.cluster.record().version.clone();
        let reaction = self.cluster.handle(msg, live);
        if reaction.record_changed {
            log::info!(
                "keyring: adopted version {} from {from} (was {before})",
                self.cluster.record().version
            );
        }
        self.apply(reaction)
    }

    /// Membership changed: the mode may move on, and what gone members said is dropped.
    pub fn members_changed(&mut self, gone: Option<&NodeName>, live: &[NodeName]) -> Vec<Send> {
        if let Some(name) = gone {
            self.cluster.forget(name);
        }
        let reaction = self.cluster.members_changed(live);
        self.apply(reaction)
    }

    /// Carries out an operator's command: the new record is written to the keyring file
    /// first, so a command that cannot be kept changes nothing.
    pub fn command(
        &mut self,
        command: Command,
        live: &[NodeName],
    ) -> Result<Vec<Send>, KeysCommandError> {
        let mut next = self.cluster.clone();
        let reaction = next
            .command(command.clone(), live)
            .map_err(KeysCommandError::Refused)?;
        save(&self.file, &next).map_err(KeysCommandError::Save)?;
        self.cluster = next;
        log::info!(
            "keyring: {} by an operator, now version {}",
            describe(&command),
            self.cluster.record().version
        );
        Ok(self.apply(Reaction {
            record_changed: false,
            ..reaction
        }))
    }

    /// The periodic advert to one random live member.
    pub fn tick(&self, live: &[NodeName], me: &NodeName) -> Option<Send> {
        let others: Vec<&NodeName> = live.iter().filter(|n| *n != me).collect();
        let pick = others.get(fastrand::usize(..others.len().max(1)))?;
        Some(self.cluster.advert_to((*pick).clone()))
    }

    /// A member just became live: tell it where this node stands.
    pub fn greet(&self, member: NodeName) -> Send {
        self.cluster.greet(member)
    }

    pub fn list(&self, live: &[NodeName]) -> KeysView {
        self.cluster.list(live)
    }

    pub fn status(&self) -> KeyringStatus {
        let record = self.cluster.record();
        KeyringStatus {
            mode: self.cluster.mode(),
            enforced: record.enforced,
            version: record.version.counter,
            keys: record
                .keyring
                .ids()
                .iter()
                .map(|id| id.to_string())
                .collect(),
            rejections: self.shared.rejections(),
        }
    }

    fn apply(&mut self, reaction: Reaction) -> Vec<Send> {
        if reaction.active_changed {
            let active = self.cluster.active();
            log::info!(
                "keyring: mode {}, primary key {}, {} key(s) installed",
                active.mode.name(),
                active.keyring.primary().id(),
                active.keyring.ids().len()
            );
            self.shared.set(active);
        }
        if reaction.record_changed {
            if let Err(e) = save(&self.file, &self.cluster) {
                log::error!("keyring: {e}; a restart would start from the older keyring");
            }
        }
        reaction.sends
    }
}

fn describe(command: &Command) -> String {
    match command {
        Command::Install(key) => format!("key {} installed", key.id()),
        Command::Use(id) => format!("key {id} made primary"),
        Command::Remove(id) => format!("key {id} removed"),
        Command::Enforce => "encryption enforced".to_owned(),
    }
}

fn save(file: &std::path::Path, cluster: &ClusterKeys) -> Result<(), String> {
    crate::keyring::write_private(file, &cluster.record().to_file_text())
        .map_err(|e| format!("cannot write the keyring file {}: {e}", file.display()))
}

/// Microseconds since the Unix epoch: the datagram clock.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

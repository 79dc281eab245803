//! The event loop's side of the gossip keyring: keyring messages in and out, the
//! operator's commands, and the addresses whose keyed handshake failed.

use super::{EventLoop, KeysAnswer, HANDSHAKE_RETRY, MAX_LINKS};
use crate::codec::Frame;
use crate::keyring::cluster::{Command, KeysMessage, Send};
use crate::member::NodeName;
use std::time::Duration;

impl EventLoop {
    /// A keyring message from a member.
    pub(super) fn handle_keys(&mut self, msg: KeysMessage) {
        let live = self.live_names();
        if let Some(keys) = &mut self.keys {
            let sends = keys.handle(msg, &live);
            self.send_keys(sends);
        }
    }

    /// Whether `addr` failed the keyed handshake lately and is no live member's.
    pub(super) fn recently_refused(&mut self, addr: &str, now: Duration) -> bool {
        let Some(at) = self.refused_addrs.get(addr) else {
            return false;
        };
        if now.saturating_sub(*at) >= HANDSHAKE_RETRY || self.is_live_member_addr(addr) {
            self.refused_addrs.remove(addr);
            return false;
        }
        true
    }

    /// An address that did not complete the keyed handshake: its link goes unless it is
    /// a live member's, and no new link is made to it for [`HANDSHAKE_RETRY`].
    pub(super) fn handshake_failed(&mut self, addr: String, why: String) {
        log::debug!("link to {addr}: keyed handshake failed: {why}");
        if self.is_live_member_addr(&addr) {
            return;
        }
        if let Some(l) = self.links.remove(&addr) {
            self.removed_link_drops += l.link.dropped;
        }
        let now = self.now();
        if self.refused_addrs.len() >= MAX_LINKS {
            self.refused_addrs
                .retain(|_, at| now.saturating_sub(*at) < HANDSHAKE_RETRY);
        }
        if self.refused_addrs.len() < MAX_LINKS {
            self.refused_addrs.insert(addr, now);
        }
    }

    /// Names of the live members, this node included.
    pub(super) fn live_names(&self) -> Vec<NodeName> {
        self.core
            .members()
            .filter(|m| m.state.is_live())
            .map(|m| m.member.name.clone())
            .collect()
    }

    /// Sends the keyring's messages on the reliable lane.
    pub(super) fn send_keys(&mut self, sends: Vec<Send>) {
        for send in sends {
            let (targets, msg) = match send {
                Send::To(to, msg) => (vec![to], msg),
                Send::Everyone(msg) => (
                    self.live_names()
                        .into_iter()
                        .filter(|n| *n != self.me.name)
                        .collect(),
                    msg,
                ),
            };
            for to in targets {
                match self.core.member_addr(&to) {
                    Some(addr) => {
                        let addr = addr.to_owned();
                        self.send_reliable(addr, Frame::Keys(msg.clone()));
                    }
                    None => self.unroutable += 1,
                }
            }
        }
    }

    /// Every second: the keyring advert to one random live member.
    pub(super) fn advertise_keys(&mut self) {
        let live = self.live_names();
        let Some(send) = self
            .keys
            .as_ref()
            .and_then(|k| k.tick(&live, &self.me.name))
        else {
            return;
        };
        self.send_keys(vec![send]);
    }

    /// A member became live (it hears where this node's keyring stands) or stopped being
    /// live (what it said is dropped); either way the mode may move on.
    pub(super) fn keys_member_changed(&mut self, name: &NodeName, live_now: bool, was_live: bool) {
        let live = self.live_names();
        let Some(keys) = &mut self.keys else {
            return;
        };
        let mut sends = keys.members_changed((!live_now).then_some(name), &live);
        if live_now && !was_live && *name != self.me.name {
            sends.push(keys.greet(name.clone()));
        }
        self.send_keys(sends);
    }

    /// Lists the keyring, after carrying out `command` if there is one.
    pub(super) fn keys_query(&mut self, command: Option<Command>) -> KeysAnswer {
        let live = self.live_names();
        let keys = self.keys.as_mut()?;
        if let Some(command) = command {
            match keys.command(command, &live) {
                Ok(sends) => self.send_keys(sends),
                Err(e) => return Some(Err(e)),
            }
        }
        self.keys.as_ref().map(|k| Ok(k.list(&live)))
    }
}

//! The discovery server's metric families, from its [`DiscoveryStatus`].

use super::{label, seconds, Families, SECONDS};
use crate::status::DiscoveryStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;

/// The discovery server's status as metrics (one scrape).
#[derive(Debug)]
pub struct DiscoveryMetrics(pub DiscoveryStatus);

impl Collector for DiscoveryMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut f = Families(encoder);
        let s = &self.0;
        f.gauge(
            "gctr_discovery_members",
            "Members in the discovery table.",
            None,
            s.members as f64,
        )?;
        f.gauge(
            "gctr_discovery_max_members",
            "Members the table takes before it refuses new names.",
            None,
            s.max_members as f64,
        )?;
        f.gauge(
            "gctr_discovery_ttl",
            "How long a member is kept without a heartbeat.",
            Some(&SECONDS),
            seconds(s.ttl_ms),
        )?;
        let e = &s.events;
        f.counters(
            "gctr_discovery_events",
            "Changes to the discovery table: joined (a new name), moved (new addresses), \
             refreshed (a heartbeat), deregistered, expired (no heartbeat for the TTL), \
             refused (the table was full).",
            None,
            [
                ("joined", e.joined),
                ("moved", e.moved),
                ("refreshed", e.refreshed),
                ("deregistered", e.deregistered),
                ("expired", e.expired),
                ("refused", e.refused),
            ]
            .map(|(event, n)| (vec![label("event", event)], n)),
        )?;
        f.access(&s.access)?;
        f.process(s.uptime_ms, &s.process)
    }
}

//! Prometheus metrics, rendered from the typed status model (`crate::status`) through
//! the official client crate, `prometheus-client`: a status snapshot is wrapped in a
//! [`Collector`] of const metrics and encoded in the Prometheus text format (0.0.4) or
//! in OpenMetrics, whichever the scraper asks for. Nothing is concatenated by hand.
//!
//! Naming follows Prometheus conventions: every name starts `gctr_`, figures are in
//! base units (seconds, bytes), counters end `_total`, and label values come from small
//! fixed sets (operation kinds, outcomes, frame types, directions, member states) or the
//! cluster's members — never from counter names.
//!
//! - `node`: the families of `GET /metrics` on a node;
//! - `discovery`: the families of `GET /metrics` on the discovery server.

mod discovery;
mod node;

pub use discovery::DiscoveryMetrics;
pub use node::NodeMetrics;

use crate::status::histogram::HistogramSnapshot;
use crate::status::process::ProcessStatus;
use crate::status::AccessStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{self, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;

/// The exposition formats a scraper can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4: what a browser or `curl` gets.
    Prometheus,
    /// OpenMetrics 1.0 text: what a Prometheus server asks for first.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names it, else the
    /// Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes `metrics` in `format`.
pub fn render(metrics: impl Collector, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics));
    let mut out = String::new();
    match format {
        Format::Prometheus => encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// Label pairs of one sample; the names are fixed, the values are bounded sets.
type Labels = Vec<(&'static str, String)>;

static SECONDS: Unit = Unit::Seconds;
static BYTES: Unit = Unit::Bytes;

/// The metric families of one scrape, written through the client's encoder: a family
/// is a name, a help text, a unit and its samples.
struct Families<'a>(DescriptorEncoder<'a>);

impl Families<'_> {
    /// A counter family: `name` gets `_total` (after the unit, if any).
    fn counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&'static Unit>,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, unit, MetricType::Counter)?;
        for (labels, value) in samples {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// One counter without labels.
    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.counters(name, help, None, [(Labels::new(), value)])
    }

    /// A gauge family.
    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&'static Unit>,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, unit, MetricType::Gauge)?;
        for (labels, value) in samples {
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// One gauge without labels.
    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&'static Unit>,
        v: f64,
    ) -> fmt::Result {
        self.gauges(name, help, unit, [(Labels::new(), v)])
    }

    /// One histogram without labels.
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&'static Unit>,
        h: &HistogramSnapshot,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, unit, MetricType::Histogram)?;
        family.encode_histogram::<Labels>(h.sum, h.count, &h.per_bucket(), None)
    }

    /// Whether API tokens are required and the requests refused, shared by nodes and
    /// discovery.
    fn access(&mut self, a: &AccessStatus) -> fmt::Result {
        self.gauge(
            "gctr_api_tokens_required",
            "1 when requests need an API token (--api-token-file), else 0.",
            None,
            if a.tokens_required { 1.0 } else { 0.0 },
        )?;
        self.counters(
            "gctr_requests_refused",
            "Requests refused for their API token: unauthenticated (HTTP 401, RESP NOAUTH or \
             WRONGPASS: none or unknown), forbidden (HTTP 403, RESP NOPERM: a read-only token \
             asked for a change).",
            None,
            [
                ("unauthenticated", a.unauthenticated),
                ("forbidden", a.forbidden),
            ]
            .map(|(reason, n)| (vec![label("reason", reason)], n)),
        )
    }

    /// The process's own figures and its uptime, shared by nodes and discovery.
    fn process(&mut self, uptime_ms: u64, p: &ProcessStatus) -> fmt::Result {
        self.gauge(
            "gctr_uptime",
            "Time since the process started serving.",
            Some(&SECONDS),
            uptime_ms as f64 / 1000.0,
        )?;
        let optional = |v: Option<u64>| v.map(|v| (Labels::new(), v as f64));
        self.gauges(
            "gctr_process_resident_memory",
            "Resident memory of the process (VmRSS).",
            Some(&BYTES),
            optional(p.resident_memory_bytes),
        )?;
        self.gauges(
            "gctr_process_threads",
            "Threads of the process.",
            None,
            optional(p.threads),
        )?;
        self.gauges(
            "gctr_process_open_fds",
            "File descriptors the process has open.",
            None,
            optional(p.open_fds),
        )
    }
}

/// One label pair.
fn label(name: &'static str, value: impl Into<String>) -> (&'static str, String) {
    (name, value.into())
}

/// Seconds in whole milliseconds, as a gauge value.
fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_servers_get_openmetrics_and_the_rest_get_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert!(Format::Prometheus.content_type().starts_with("text/plain"));
    }
}

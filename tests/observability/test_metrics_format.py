"""Every metric family of a node and of the discovery server parses with Python's
Prometheus parsers — the classic text-format parser for what curl gets, the strict
OpenMetrics parser for what a Prometheus server gets — with a type and help text, and
the figures match what was done to the cluster."""

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from conftest import get_json, http, wait_until

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

NODE_FAMILIES = {
    "gctr_node_info": "gauge",
    "gctr_ops": "counter",
    "gctr_op_duration_seconds": "histogram",
    "gctr_group_commit_ops": "histogram",
    "gctr_learned_log_failures": "counter",
    "gctr_writes_held": "gauge",
    "gctr_new_incarnations": "counter",
    "gctr_idempotency_keys": "gauge",
    "gctr_idempotency_live_acceptances": "gauge",
    "gctr_idempotency_requests": "counter",
    "gctr_idempotency_resolved": "counter",
    "gctr_idempotency_expired": "counter",
    "gctr_durable": "gauge",
    "gctr_wal_bytes": "gauge",
    "gctr_wal_segments": "gauge",
    "gctr_wal_records_since_snapshot": "gauge",
    "gctr_wal_failed": "gauge",
    "gctr_wal_fsyncs": "counter",
    "gctr_fsync_duration_seconds": "histogram",
    "gctr_snapshots": "counter",
    "gctr_snapshot_age_seconds": "gauge",
    "gctr_gossip_frames": "counter",
    "gctr_gossip_bytes": "counter",
    "gctr_gossip_rounds": "counter",
    "gctr_gossip_rounds_skipped": "counter",
    "gctr_gossip_entries": "counter",
    "gctr_push_forwarded": "counter",
    "gctr_push_batches": "counter",
    "gctr_gap_repairs": "counter",
    "gctr_own_origin_claims": "counter",
    "gctr_digests_over_limit": "counter",
    "gctr_queue_drops": "counter",
    "gctr_unroutable_frames": "counter",
    "gctr_malformed_frames": "counter",
    "gctr_inbound_connections": "counter",
    "gctr_hello_timeouts": "counter",
    "gctr_inbound_connections_open": "gauge",
    "gctr_members": "gauge",
    "gctr_counters": "gauge",
    "gctr_origins": "gauge",
    "gctr_origins_retired": "gauge",
    "gctr_tombstone_entries": "gauge",
    "gctr_origins_compacted": "gauge",
    "gctr_compacted_changes_refused": "counter",
    "gctr_compaction_adoptions": "counter",
    "gctr_retirements": "counter",
    "gctr_entries": "gauge",
    "gctr_replication_lag_versions": "gauge",
    "gctr_replication_lag_seconds": "gauge",
    "gctr_replication_digest_age_seconds": "gauge",
    "gctr_api_tokens_required": "gauge",
    "gctr_requests_refused": "counter",
    "gctr_uptime_seconds": "gauge",
    "gctr_process_resident_memory_bytes": "gauge",
    "gctr_process_threads": "gauge",
    "gctr_process_open_fds": "gauge",
}

DISCOVERY_FAMILIES = {
    "gctr_discovery_members": "gauge",
    "gctr_discovery_max_members": "gauge",
    "gctr_discovery_ttl_seconds": "gauge",
    "gctr_discovery_events": "counter",
    "gctr_api_tokens_required": "gauge",
    "gctr_requests_refused": "counter",
    "gctr_uptime_seconds": "gauge",
    "gctr_process_resident_memory_bytes": "gauge",
    "gctr_process_threads": "gauge",
    "gctr_process_open_fds": "gauge",
}

SECRET_COUNTER = "no-counter-name-in-metrics"


def scrape(url, accept=None):
    status, headers, text = http("GET", url, headers={"Accept": accept} if accept else {})
    assert status == 200, text
    return headers["Content-Type"], text


def families(text, parser):
    """name -> family, every family checked for a type, help text and gctr_ name."""
    found = {}
    for family in parser(text):
        assert family.name.startswith("gctr_"), family.name
        assert family.type in ("counter", "gauge", "histogram"), (family.name, family.type)
        assert family.documentation.strip(), f"{family.name} has no help text"
        assert family.name not in found, f"{family.name} appears twice"
        found[family.name] = family
    return found


def sample(family, suffix="", **labels):
    """The value of the one sample of `family` with this name suffix and these labels."""
    matches = [s.value for s in family.samples
               if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (family.name, suffix, labels, family.samples)
    return matches[0]


def check_both_formats(url, expected):
    content_type, text = scrape(url)
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    classic = families(text, parse_text)
    content_type, om_text = scrape(url, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0"), content_type
    assert om_text.endswith("# EOF\n")
    strict = families(om_text, parse_openmetrics)
    for name, kind in expected.items():
        for parsed in (classic, strict):
            assert name in parsed, f"{name} missing from {url}: {sorted(parsed)}"
            assert parsed[name].type == kind, (name, parsed[name].type)
    assert set(classic) == set(strict)
    assert SECRET_COUNTER not in text and SECRET_COUNTER not in om_text
    return classic, strict


def test_every_family_parses_with_types_and_help_and_tells_the_truth(cluster):
    discovery = cluster.start_discovery()
    n1, n2 = cluster.start(2, ["--snapshot-records", "5"], discovery=discovery)

    for _ in range(6):
        assert n1.post("/counters/hits/increment")[0] == 200
    assert n1.post("/counters/hits/decrement?by=2")[0] == 200
    assert n1.post(f"/counters/{SECRET_COUNTER}/increment?by=9223372036854775807")[0] == 200
    assert n1.post(f"/counters/{SECRET_COUNTER}/increment")[0] == 400
    assert n2.post("/counters/hits/increment")[0] == 200
    # n1 sees n2's digest holding all of n1's writes.
    wait_until("n1 sees n2 caught up", 10, lambda: any(
        r["peer"] == "n2" and r["versions_behind"] == 0
        for r in get_json(n1.url("/status"))["replication"]))

    classic, strict = check_both_formats(n1.url("/metrics"), NODE_FAMILIES)
    for f in (classic, strict):
        ops = f["gctr_ops"]
        assert sample(ops, "_total", op="increment", result="ok") == 7
        assert sample(ops, "_total", op="increment", result="refused") == 1
        assert sample(ops, "_total", op="decrement", result="ok") == 1
        assert sample(ops, "_total", op="decrement", result="failed") == 0
        # Every operation, refused ones too, was timed from request to answer.
        assert sample(f["gctr_op_duration_seconds"], "_count") == 9
        assert sample(f["gctr_op_duration_seconds"], "_bucket", le="+Inf") == 9
        assert sample(f["gctr_group_commit_ops"], "_count") == 9
        assert sample(f["gctr_fsync_duration_seconds"], "_count") >= 8
        assert sample(f["gctr_snapshots"], "_total") >= 1
        assert sample(f["gctr_durable"]) == 1
        assert sample(f["gctr_members"], state="alive") == 2
        for gone in ("suspect", "dead", "left"):
            assert sample(f["gctr_members"], state=gone) == 0
        assert sample(f["gctr_counters"]) == 2
        assert sample(f["gctr_replication_lag_versions"], peer="n2") == 0
        assert sample(f["gctr_replication_lag_seconds"], peer="n2") == 0
        assert sample(f["gctr_node_info"], name="n1") == 1
        assert sample(f["gctr_process_resident_memory_bytes"]) > 1_000_000
        assert sample(f["gctr_gossip_rounds"], "_total") > 0
        assert sample(f["gctr_gossip_frames"], "_total", direction="out", type="push") > 0

    wait_until("a heartbeat reaches discovery", 10, lambda: get_json(
        f"http://{discovery.http}/status")["events"]["refreshed"] >= 1)
    classic, strict = check_both_formats(f"http://{discovery.http}/metrics", DISCOVERY_FAMILIES)
    for f in (classic, strict):
        assert sample(f["gctr_discovery_members"]) == 2
        assert sample(f["gctr_discovery_events"], "_total", event="joined") == 2
        assert sample(f["gctr_discovery_events"], "_total", event="refreshed") >= 1
        assert sample(f["gctr_discovery_ttl_seconds"]) == 3

"""A real Prometheus server (Debian's package) scrapes a 3-node cluster and its discovery
server on loopback, with a generated configuration. Through Prometheus's own HTTP query
API: `up` is 1 for every target, `gctr_ops_total` grows by exactly the operations sent,
and the README's three PromQL queries (write rate, p99 latency, converged) answer."""

import json
import shutil
import socket
import urllib.parse

import pytest

from conftest import get_json, http, wait_until

SCRAPE_INTERVAL_S = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_config(nodes, discovery):
    # JSON is YAML: the configuration is written with the JSON encoder.
    return json.dumps({
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": "gctr", "static_configs": [{"targets": [n.http for n in nodes]}]},
            {"job_name": "gctr-discovery", "static_configs": [{"targets": [discovery.http]}]},
        ],
    }, indent=2)


class Prometheus:
    def __init__(self, cluster, config_text):
        self.dir = cluster.tmp / "prometheus"
        self.dir.mkdir()
        config = self.dir / "prometheus.yml"
        config.write_text(config_text)
        self.addr = f"127.0.0.1:{free_port()}"
        self.proc = cluster.spawn("prometheus", [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={self.addr}",
            "--log.level=warn",
        ])
        wait_until("Prometheus is ready", 30, self.ready)

    def ready(self):
        if self.proc.proc.poll() is not None:
            pytest.fail(f"prometheus exited: {self.proc.log_tail()}")
        return http("GET", f"http://{self.addr}/-/ready", timeout=1)[0] == 200

    def query(self, promql):
        """The instant vector `promql` gives now, as {instance or '': value}."""
        url = f"http://{self.addr}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        answer = get_json(url)
        assert answer["status"] == "success", answer
        data = answer["data"]
        if data["resultType"] == "scalar":
            return {"": float(data["result"][1])}
        return {r["metric"].get("instance", ""): float(r["value"][1]) for r in data["result"]}

    def scrapes_so_far(self, instance):
        """How many times `instance` has been scraped (its `up` samples in a window)."""
        result = self.query(f'count_over_time(up{{instance="{instance}"}}[1h])')
        return int(result.get(instance, 0))


def test_prometheus_scrapes_every_node_and_counts_exactly_the_operations_sent(cluster):
    discovery = cluster.start_discovery()
    nodes = cluster.start(3, discovery=discovery)
    prom = Prometheus(cluster, prometheus_config(nodes, discovery))
    targets = {n.http for n in nodes}

    def every_target_up():
        up = prom.query('up{job="gctr"}')
        return set(up) == targets and all(v == 1 for v in up.values()) and \
            prom.query('up{job="gctr-discovery"}') == {discovery.http: 1.0}
    wait_until("up is 1 for every node and discovery", 30, every_target_up, interval=0.2)

    ok_increments = 'gctr_ops_total{op="increment",result="ok"}'
    before = wait_until("every node's operations are scraped", 15, lambda: (
        lambda v: v if set(v) == targets else None)(prom.query(ok_increments)), interval=0.2)

    sent = {nodes[0].http: 3, nodes[1].http: 5, nodes[2].http: 7}
    for node in nodes:
        for _ in range(sent[node.http]):
            assert node.post("/counters/scraped/increment")[0] == 200
    for _ in range(2):
        assert nodes[0].post("/counters/scraped/decrement")[0] == 200
    # One increment past the limit: refused, nothing applied, counted as refused.
    assert nodes[1].post("/counters/huge/increment?by=9223372036854775807")[0] == 200
    assert nodes[1].post("/counters/huge/increment")[0] == 400
    sent[nodes[1].http] += 1

    expected = {i: before[i] + sent[i] for i in targets}
    wait_until("Prometheus shows exactly the increments sent", 20,
               lambda: prom.query(ok_increments) == expected, interval=0.2)
    # Two more scrapes of every node change nothing: nothing is counted twice.
    counts = {i: prom.scrapes_so_far(i) for i in targets}
    wait_until("two more scrapes", 10, lambda: all(
        prom.scrapes_so_far(i) >= counts[i] + 2 for i in targets), interval=0.2)
    assert prom.query(ok_increments) == expected
    assert prom.query('gctr_ops_total{op="decrement",result="ok"}') == \
        {nodes[0].http: 2.0, nodes[1].http: 0.0, nodes[2].http: 0.0}
    assert prom.query('sum by (instance) (gctr_ops_total{result="refused"})') == \
        {nodes[0].http: 0.0, nodes[1].http: 1.0, nodes[2].http: 0.0}
    assert prom.query('sum(gctr_ops_total{result="failed"})') == {"": 0.0}
    assert prom.query("sum(gctr_discovery_members)") == {"": 3.0}

    # The README's queries.
    write_rate = prom.query('sum(rate(gctr_ops_total{result="ok"}[1m]))')
    assert write_rate[""] > 0, write_rate
    p99 = prom.query('histogram_quantile(0.99, '
                     'sum by (le) (rate(gctr_op_duration_seconds_bucket[1m])))')
    assert 0 < p99[""] < 2.5, p99
    converged = "max(gctr_replication_lag_versions) == bool 0"
    wait_until("the converged query says yes", 15,
               lambda: prom.query(converged) == {"": 1.0}, interval=0.2)
    for node in nodes:
        assert get_json(node.url("/counters/scraped"))["value"] == 15 - 2


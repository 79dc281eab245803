"""Shared harness for the observability tests: gctr processes on loopback ports the
system picks, HTTP helpers, and polling with deadlines.

Every process a test starts runs in its own session and is stopped when the test's
fixture ends, whether it passed or failed; a SIGTERM or SIGINT to pytest runs the same
teardown, and at exit any child process still left is killed.
"""

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GCTR = os.environ.get("GCTR_BIN", str(REPO / "target" / "release" / "gctr"))


def _stop_on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _stop_on_signal)


def wait_until(desc, timeout, check, interval=0.05):
    """Calls check() until it returns something truthy, and returns that; fails after
    timeout seconds, naming desc and what the last try returned or raised."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as e:  # the last failure is reported below
            last = repr(e)
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting until {desc} (last try: {last})")
        time.sleep(interval)


def http(method, url, body=None, headers=None, timeout=3):
    """(status, headers, body text) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def get_json(url, timeout=3):
    status, _, text = http("GET", url, timeout=timeout)
    assert status == 200, f"GET {url}: {status} {text}"
    return json.loads(text)


class Process:
    """A child process in its own session, its output in a log file."""

    def __init__(self, name, args, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def first_line(self, timeout=20):
        """The first line the process prints on stdout (its start-up line)."""
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.stop()
            pytest.fail(f"{self.name} printed nothing within {timeout}s: {self.log_tail()}")
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            pytest.fail(f"{self.name} exited at start: {self.log_tail()}")
        return line

    def kill(self):
        """SIGKILL, as a crash."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, grace=5):
        """SIGTERM, then SIGKILL after the grace period."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()

    def log_tail(self, lines=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Node(Process):
    def __init__(self, name, log_dir, data_dir, extra_args):
        args = [GCTR, "node", "--addr", "127.0.0.1:0", "--http", "127.0.0.1:0",
                "--name", name, "--wal", str(Path(data_dir) / name), *extra_args]
        super().__init__(name, args, log_dir)
        line = self.first_line()
        # gctr node NAME gossip ADDR http ADDR
        words = line.split()
        assert words[:3] == ["gctr", "node", name], line
        self.gossip = words[4]
        self.http = words[6]

    def url(self, path):
        return f"http://{self.http}{path}"

    def post(self, path):
        status, _, text = http("POST", self.url(path))
        return status, json.loads(text)


class Cluster:
    """Nodes named n1..nN on loopback, each seeded with the earlier ones (or joined
    through a discovery server), each with its own WAL."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.nodes = []
        self.others = []

    def start_discovery(self):
        d = Process("discovery", [GCTR, "discovery", "--port", "0", "--ttl", "3s"], self.tmp)
        self.others.append(d)
        # discovery listening on http://ADDR
        d.http = d.first_line().rsplit("http://", 1)[1]
        return d

    def start(self, n, extra_args=(), discovery=None):
        for i in range(1, n + 1):
            args = list(extra_args)
            if discovery:
                args += ["--discovery", f"http://{discovery.http}", "--heartbeat-interval", "300ms"]
            elif self.nodes:
                args += ["--seeds", ",".join(node.gossip for node in self.nodes)]
            self.nodes.append(Node(f"n{i}", self.tmp, self.tmp / "data", args))
        for node in self.nodes:
            wait_until(f"{node.name} reaches every other node", 20,
                       lambda node=node: self.knows_all(node))
        return self.nodes

    def knows_all(self, node):
        names = {n.name for n in self.nodes} - {node.name}
        peers = get_json(node.url("/peers"))["peers"]
        return names <= {p["name"] for p in peers if p["reachable"]}

    def spawn(self, name, args):
        """Another process the test needs (Prometheus, say), stopped with the cluster."""
        p = Process(name, args, self.tmp)
        self.others.append(p)
        return p

    def stop(self, failed):
        for p in self.nodes + self.others:
            p.stop()
        if failed:
            for p in self.nodes + self.others:
                print(f"--- last lines of {p.name}.log\n{p.log_tail()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def cluster(request):
    with tempfile.TemporaryDirectory(prefix="gctr-obs-") as tmp:
        c = Cluster(tmp)
        try:
            yield c
        finally:
            call = getattr(request.node, "report_call", None)
            c.stop(failed=call is None or call.failed)


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pytest_sessionfinish(session, exitstatus):
    """The last net: nothing this session started outlives it."""
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

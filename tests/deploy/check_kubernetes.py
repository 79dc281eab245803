#!/usr/bin/env python3
"""Checks the Kubernetes example (deploy/kubernetes/gctr.yaml) against the binary.

Usage: check_kubernetes.py GCTR_BIN [MANIFEST]

The manifest must parse as YAML and hold a headless service that publishes pods before
they are ready, and a StatefulSet that names it, claims a volume per pod mounted where
GCTR_WAL points, probes readiness and liveness on the HTTP port, and is seeded by the
headless service. Every GCTR_* variable and every option in the container's arguments
and exec probes must be one that `gctr COMMAND --help` lists. Exits 1 naming each
problem.
"""

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def options_of(gctr, command):
    """The long options `gctr COMMAND --help` lists, without their dashes."""
    out = subprocess.run([gctr, command, "--help"], capture_output=True, text=True, check=True)
    return set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z0-9-]*)", out.stdout, re.M))


def env_var(option):
    return "GCTR_" + option.upper().replace("-", "_")


def options_in(args):
    return [a[2:].split("=", 1)[0] for a in args if a.startswith("--")]


class Checker:
    def __init__(self, gctr):
        self.gctr = gctr
        self.problems = []
        self.known = {}

    def options(self, command):
        if command not in self.known:
            self.known[command] = options_of(self.gctr, command)
        return self.known[command]

    def expect(self, ok, problem):
        if not ok:
            self.problems.append(problem)

    def command_line(self, what, args):
        """ARGS is `COMMAND [OPTIONS]`: each option must be one COMMAND takes."""
        self.expect(bool(args), f"{what}: no gctr command")
        if not args:
            return None
        command = args[0]
        known = self.options(command)
        for option in options_in(args[1:]):
            self.expect(option in known, f"{what}: `gctr {command}` has no option --{option}")
        return command

    def container(self, c, headless, claims):
        args = c.get("args") or c.get("command", [])[1:]
        command = self.command_line("container args", args)
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if command:
            by_var = {env_var(o): o for o in self.options(command)}
            for name in env:
                if name.startswith("GCTR_"):
                    self.expect(name in by_var, f"{name} sets no option of `gctr {command}`")
        seeds = env.get("GCTR_SEEDS") or ""
        self.expect(any(s.split(":")[0] == headless for s in seeds.split(",")),
                    f"GCTR_SEEDS {seeds!r} does not name the headless service {headless}")
        self.expect(bool(env.get("GCTR_ADVERTISE")), "no GCTR_ADVERTISE: peers would be told 0.0.0.0")
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        wal = env.get("GCTR_WAL", "/data")
        self.expect(any(mounts.get(n) == wal for n in claims),
                    f"no volume claim is mounted at the WAL directory {wal}")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        self.expect(ports.get("http") == 9010, "the http port is not 9010")
        for kind in ("readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            self.expect(probe is not None, f"no {kind}")
            if probe is None:
                continue
            if "exec" in probe:
                cmd = probe["exec"]["command"]
                self.expect(cmd[:2] == ["/gctr", "health"], f"{kind} runs {cmd}, not /gctr health")
                self.command_line(kind, cmd[1:])
            else:
                get = probe.get("httpGet", {})
                self.expect(get.get("path") == "/health", f"{kind} does not ask /health")
                self.expect(get.get("port") in ("http", 9010), f"{kind} asks another port")

    def manifest(self, docs):
        services = [d for d in docs if d.get("kind") == "Service"]
        sets = [d for d in docs if d.get("kind") == "StatefulSet"]
        self.expect(len(sets) == 1, f"{len(sets)} StatefulSets, want 1")
        if not sets:
            return
        spec = sets[0]["spec"]
        headless = spec.get("serviceName")
        svc = next((s for s in services if s["metadata"]["name"] == headless), None)
        self.expect(svc is not None, f"serviceName {headless!r} names no Service in the file")
        if svc is not None:
            self.expect(svc["spec"].get("clusterIP") == "None", f"{headless} is not headless")
            self.expect(svc["spec"].get("publishNotReadyAddresses") is True,
                        f"{headless} hides pods that are not ready yet from the seed list")
        claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
        self.expect(bool(claims), "no volumeClaimTemplates: pods would share or lose data")
        pod = spec["template"]["spec"]
        self.expect(pod.get("securityContext", {}).get("runAsNonRoot") is True, "pods may run as root")
        containers = pod.get("containers", [])
        self.expect(len(containers) == 1, "want one container")
        for c in containers:
            self.container(c, headless, claims)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    manifest = Path(sys.argv[2]) if len(sys.argv) == 3 else REPO / "deploy/kubernetes/gctr.yaml"
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    checker = Checker(sys.argv[1])
    checker.manifest(docs)
    for p in checker.problems:
        print(f"FAIL: {manifest}: {p}", file=sys.stderr)
    if checker.problems:
        sys.exit(1)
    print(f"PASS: {manifest}: {len(docs)} objects; every option and GCTR_* variable is accepted")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Runs every test gctr has: cargo's unit and integration tests, the check of the
# Kubernetes example, each shell-script cluster test in tests/cluster/, the observability
# tests in tests/observability/, then the container tests in tests/docker/ (each skipped,
# saying why, when no Docker engine answers).
# Installs what a fresh machine lacks (needs root for that) and exits non-zero on the
# first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v ip >/dev/null || need_packages+=(iproute2)
command -v python3 >/dev/null || need_packages+=(python3)
# The Kubernetes example is parsed with PyYAML.
python3 -c 'import yaml' 2>/dev/null || need_packages+=(python3-yaml)
# The Redis-protocol tests drive the node with redis-cli and redis-benchmark.
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null ||
    need_packages+=(redis-tools)
if ((${#need_packages[@]})); then
    echo "test.sh: installing ${need_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi
# ... and with the Python redis package: Debian's when python3 is the system one,
# else (or if that is not enough) from PyPI.
if ! python3 -c 'import redis' 2>/dev/null; then
    echo "test.sh: installing the Python redis package"
    if [[ $(command -v python3) == /usr/bin/python3 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-redis >/dev/null || true
    fi
    python3 -c 'import redis' 2>/dev/null ||
        python3 -m pip install -q redis 2>/dev/null ||
        python3 -m pip install -q --break-system-packages redis
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# The fuzz targets live in their own workspace; this keeps them building.
cargo check --quiet --manifest-path fuzz/Cargo.toml
cargo test --quiet
# Release builds do not check integer overflow: the version-bound tests again there, so a
# wrap would show as a wrong answer instead of being caught by a debug-build panic.
cargo test --release --quiet --test origin_ownership
# Retirement in the simulator again, with the 2,000 replacements built for release runs
# only (minutes unoptimised, one minute optimised).
cargo test --release --quiet --test retirement_simulation
# The Kubernetes example names only options the binary accepts.
python3 tests/deploy/check_kubernetes.py "${CARGO_TARGET_DIR:-target}/debug/gctr"

shopt -s nullglob
for t in tests/cluster/*.sh; do
    echo "=== $t"
    bash "$t"
done
# Metrics parsed, scraped by a real Prometheus, the dashboard in a real Chromium; the
# runner installs Prometheus, Chromium and the Python packages when missing.
echo "=== tests/observability"
bash tests/observability/run.sh
# The image, the Compose cluster and faults across containers (tests/docker/lib.sh).
for t in tests/docker/*.sh; do
    [[ $t == */lib.sh ]] && continue
    echo "=== $t"
    bash "$t"
done
echo "test.sh: all tests passed"

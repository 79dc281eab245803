#!/usr/bin/env bash
# Runs every test gctr has: cargo's unit and integration tests, then each shell-script
# cluster test in tests/cluster/, then the observability tests in tests/observability/.
# Installs what a fresh machine lacks (needs root for that) and exits non-zero on the
# first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v ip >/dev/null || need_packages+=(iproute2)
command -v python3 >/dev/null || need_packages+=(python3)
if ((${#need_packages[@]})); then
    echo "test.sh: installing ${need_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# The fuzz targets live in their own workspace; this keeps them building.
cargo check --quiet --manifest-path fuzz/Cargo.toml
cargo test --quiet

shopt -s nullglob
for t in tests/cluster/*.sh; do
    echo "=== $t"
    bash "$t"
done
# Metrics parsed, scraped by a real Prometheus, the dashboard in a real Chromium; the
# runner installs Prometheus, Chromium and the Python packages when missing.
echo "=== tests/observability"
bash tests/observability/run.sh
echo "test.sh: all tests passed"

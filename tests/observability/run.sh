#!/usr/bin/env bash
# Runs the observability tests (tests/observability/test_*.py, with pytest): the metric
# families parsed by Python's Prometheus parsers, a 3-node cluster scraped by a real
# Prometheus server, and the dashboard driven in a real headless Chromium.
#
# Installs what a fresh Debian machine lacks, quietly and only when missing (needs root
# for that): Debian's prometheus, chromium, chromium-driver and python3-venv, and a
# virtualenv (target/observability-venv, or $GCTR_OBS_VENV) with requirements.txt from
# PyPI. Builds the release binary when needed ($GCTR_BIN tests another one). Every
# process the tests start is stopped by the tests themselves, even when they fail.
#
# Environment: GCTR_DASHBOARD_SCREENSHOT=PATH  where the browser test saves its screenshot
#              (docs/dashboard.png refreshes the README's; default target/dashboard.png).
# Arguments are passed to pytest (e.g. -k browser).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/observability

need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
    echo "observability: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

venv=${GCTR_OBS_VENV:-target/observability-venv}
stamp=$venv/.requirements
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
    echo "observability: installing the Python packages into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi

if [[ -z ${GCTR_BIN:-} ]]; then
    cargo build --release --quiet --bin gctr
    export GCTR_BIN=$PWD/target/release/gctr
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here" "$@"

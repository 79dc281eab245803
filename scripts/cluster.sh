#!/usr/bin/env bash
# A local gctr cluster: one discovery server and N nodes on loopback, each node with its
# own write-ahead log, all state under one git-ignored directory. Every operation goes
# through the gctr client commands, so this script is also a tour of the CLI.
#
# Settings (environment): GCTR_CLUSTER_DIR (default ./.cluster), GCTR_DISCOVERY_PORT
# (8000), GCTR_GOSSIP_BASE (9000: node i gossips on base+i-1), GCTR_HTTP_BASE (8010),
# GCTR_BIN (default: release/gctr under $CARGO_TARGET_DIR or target/, built when
# needed), GCTR_NODE_ARGS (extra arguments for every node).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${GCTR_CLUSTER_DIR:-$ROOT/.cluster}"
DISCOVERY_PORT="${GCTR_DISCOVERY_PORT:-8000}"
GOSSIP_BASE="${GCTR_GOSSIP_BASE:-9000}"
HTTP_BASE="${GCTR_HTTP_BASE:-8010}"
DISCOVERY_URL="http://127.0.0.1:$DISCOVERY_PORT"
export GCTR_DISCOVERY="$DISCOVERY_URL"

usage() {
    cat <<EOF
Usage: scripts/cluster.sh COMMAND [ARGS]

  start [N]             start discovery and N nodes (default 5), building gctr if needed
  stop                  stop every process (SIGTERM, then SIGKILL after 5 s)
  status                which processes run, and every node's health
  inc [NODE] [COUNTER]  increment COUNTER (default: default) on NODE (default 1)
  dec [NODE] [COUNTER]  decrement
  counter [NODE]        the value on NODE, or on every live member with whether they
                        agree (dead and left members listed apart; exit 1 if not)
  members [NODE]        NODE's members and their states (default 1)
  peers [NODE]          NODE's view of the other members (default 1)
  logs [NODE|discovery] the last lines of a log (default: discovery)
  kill NODE             SIGKILL a node (its WAL stays)
  restart NODE          start a stopped or killed node again on its WAL, and wait until
                        it has caught up with the others
  add                   start one more node, found through discovery
  simulation [SECONDS]  random increments and decrements across nodes (default 10 s),
                        then check every node reaches the exact expected value
  clean                 stop everything and delete $DIR
  help                  this text

Discovery: $DISCOVERY_URL; node i: gossip 127.0.0.1:$((GOSSIP_BASE))+i-1,
HTTP 127.0.0.1:$((HTTP_BASE))+i-1; data, logs and pids under $DIR.
EOF
}

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

# Sets GCTR to the binary: $GCTR_BIN, else release/gctr under $CARGO_TARGET_DIR (default
# target/), built when missing or older than the sources. Called in the main shell (not
# in $(...)) so the value sticks.
GCTR=""
ensure_bin() {
    [[ -n "$GCTR" ]] && return
    if [[ -n "${GCTR_BIN:-}" ]]; then
        [[ -x "$GCTR_BIN" ]] || die "GCTR_BIN=$GCTR_BIN is not an executable"
        GCTR="$GCTR_BIN"
        return
    fi
    local target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
    [[ $target_dir == /* ]] || target_dir="$ROOT/$target_dir"
    GCTR="$target_dir/release/gctr"
    if [[ ! -x "$GCTR" ]] || [[ -n "$(find "$ROOT/src" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$GCTR" -print -quit)" ]]; then
        echo "cluster.sh: building gctr (release)" >&2
        (cd "$ROOT" && cargo build --release --quiet) >&2
        [[ -x "$GCTR" ]] || die "the build left no binary at $GCTR"
    fi
}

# Runs a gctr client command.
gctr() {
    ensure_bin
    "$GCTR" "$@"
}

pid_of() { cat "$DIR/pids/$1.pid" 2>/dev/null || true; }

running() {
    local pid
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

nodes() {
    local f
    for f in "$DIR"/pids/*.pid "$DIR"/data/*; do
        [[ -e "$f" ]] || continue
        f="$(basename "$f" .pid)"
        [[ "$f" == discovery ]] || echo "$f"
    done | sort -nu
}

check_node() {
    if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1)); then
        die "node names are numbers from 1, got '$1'"
    fi
}

start_discovery() {
    running discovery && return
    mkdir -p "$DIR/pids" "$DIR/logs"
    ensure_bin
    # The binary itself goes in the background, so $! is the process to signal.
    "$GCTR" discovery --port "$DISCOVERY_PORT" >>"$DIR/logs/discovery.log" 2>&1 &
    echo $! >"$DIR/pids/discovery.pid"
    wait_for discovery discovery http_ok "$DISCOVERY_PORT" /health
}

start_node() {
    local i="$1"
    check_node "$i"
    if running "$i"; then
        echo "node $i already runs (pid $(pid_of "$i"))"
        return
    fi
    mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/data"
    local gossip="127.0.0.1:$((GOSSIP_BASE + i - 1))" http="127.0.0.1:$((HTTP_BASE + i - 1))"
    ensure_bin
    # shellcheck disable=SC2086
    "$GCTR" node --name "$i" --addr "$gossip" --http "$http" --wal "$DIR/data/$i" \
        --discovery "$DISCOVERY_URL" ${GCTR_NODE_ARGS:-} >>"$DIR/logs/$i.log" 2>&1 &
    echo $! >"$DIR/pids/$i.pid"
    wait_for "$i" "node $i" "$GCTR" get --http "$http"
    echo "node $i: gossip $gossip, http $http"
}

# Prints the body of GET http://127.0.0.1:PORT/PATH, and succeeds on a 200 answer.
http_get() {
    local port="$1" path="$2" answer
    answer="$(
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        cat <&3
    )" 2>/dev/null || return 1
    [[ "$answer" == "HTTP/1."?" 200"* ]] || return 1
    printf '%s' "${answer#*$'\r\n\r\n'}"
}

http_ok() {
    http_get "$@" >/dev/null 2>&1
}

# Runs CMD until it succeeds; fails after 30 s, or at once if the process NAME exits,
# showing the last lines of its log.
wait_for() {
    local name="$1" what="$2" deadline=$((SECONDS + 30))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ! running "$name"; then
            echo "cluster.sh: $what exited; the end of $DIR/logs/$name.log:" >&2
            tail -n 5 "$DIR/logs/$name.log" >&2
            exit 1
        fi
        ((SECONDS < deadline)) || die "$what did not come up within 30 s (see $DIR/logs/$name.log)"
        sleep 0.1
    done
}

# Fails unless the cluster (its discovery server) runs.
require_running() {
    running discovery || die "the cluster is stopped: run 'scripts/cluster.sh start' first"
}

# Waits until node N holds every counter of another running node with the same value.
wait_caught_up() {
    local n="$1" other m
    for m in $(nodes); do
        if [[ "$m" != "$n" ]] && running "$m"; then other="$m" && break; fi
    done
    [[ -n "${other:-}" ]] || return 0
    local mine theirs deadline=$((SECONDS + 30))
    while :; do
        mine="$(http_get $((HTTP_BASE + n - 1)) /counters 2>/dev/null || true)"
        theirs="$(http_get $((HTTP_BASE + other - 1)) /counters 2>/dev/null || true)"
        [[ -n "$mine" && "$mine" == "$theirs" ]] && break
        ((SECONDS < deadline)) || die "node $n did not catch up with node $other within 30 s"
        sleep 0.1
    done
    echo "node $n caught up with node $other"
}

stop_all() {
    local name pid stopped=0
    for f in "$DIR"/pids/*.pid; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .pid)"
        pid="$(pid_of "$name")"
        if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    local deadline=$((SECONDS + 5))
    for f in "$DIR"/pids/*.pid; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .pid)"
        pid="$(pid_of "$name")"
        while [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if [[ -n "$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
        rm -f "$f"
        stopped=$((stopped + 1))
    done
    echo "stopped $stopped process(es)"
}

cmd_start() {
    local n="${1:-5}"
    if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1)); then
        die "start takes a node count, got '$n'"
    fi
    ensure_bin
    start_discovery
    echo "discovery: $DISCOVERY_URL"
    local i
    for ((i = 1; i <= n; i++)); do start_node "$i"; done
    echo "cluster up: try 'gctr inc --node 2' then 'gctr get --all --node 1' (with $(dirname "$GCTR") on PATH)"
}

cmd_status() {
    local name
    if running discovery; then echo "discovery: running (pid $(pid_of discovery))"; else echo "discovery: stopped"; fi
    for name in $(nodes); do
        if running "$name"; then
            echo "node $name: running (pid $(pid_of "$name")), value $(gctr get --node "$name" 2>&1)"
        else
            echo "node $name: stopped"
        fi
    done
}

cmd_simulation() {
    local seconds="${1:-10}"
    [[ "$seconds" =~ ^[0-9]+$ ]] || die "simulation takes seconds, got '$seconds'"
    local -a live
    mapfile -t live < <(for n in $(nodes); do running "$n" && echo "$n"; done)
    ((${#live[@]})) || die "no node is running"
    local counter="sim-$RANDOM$RANDOM" expected=0 ops=0 failed=0
    # Bash's SECONDS ticks in whole seconds; the clock in milliseconds keeps the length.
    local deadline=$(($(date +%s%3N) + seconds * 1000))
    echo "simulation: random operations on '$counter' across nodes ${live[*]} for ${seconds}s"
    # Each operation carries an idempotency key, so a retry after a failure that was
    # applied after all (a timeout, say) counts once: the expected value stays exact.
    while (($(date +%s%3N) < deadline)); do
        local node="${live[RANDOM % ${#live[@]}]}" by=$((RANDOM % 5 + 1)) op=inc sign=1 try
        ((RANDOM % 2)) && op=dec sign=-1
        for try in 1 2 3 4 5; do
            gctr "$op" "$counter" --by "$by" --id "$counter-$ops" --node "$node" >/dev/null 2>&1 &&
                break
            failed=$((failed + 1))
            ((try < 5)) || die "simulation: node $node failed one $op 5 times; its outcome is unknown"
            sleep 0.1
        done
        expected=$((expected + sign * by))
        ops=$((ops + 1))
    done
    echo "simulation: $ops operations ($failed attempts retried), expected value $expected"
    local settle=$((SECONDS + 30)) n agree
    while :; do
        agree=1
        for n in "${live[@]}"; do
            [[ "$(gctr get "$counter" --node "$n" 2>/dev/null)" == "$expected" ]] || agree=0
        done
        ((agree)) && break
        if ((SECONDS >= settle)); then
            for n in "${live[@]}"; do echo "node $n: $(gctr get "$counter" --node "$n" 2>&1)"; done
            die "simulation: nodes disagree with the expected value $expected"
        fi
        sleep 0.1
    done
    echo "simulation: every node reports $expected"
}

main() {
    local cmd="${1:-help}"
    shift || true
    case "$cmd" in
    start) cmd_start "$@" ;;
    stop) stop_all ;;
    status) cmd_status ;;
    inc | dec)
        local node="${1:-1}" counter="${2:-default}"
        check_node "$node"
        gctr "$cmd" "$counter" --node "$node"
        ;;
    counter)
        if [[ -n "${1:-}" ]]; then
            check_node "$1"
            gctr get --node "$1"
        else
            gctr get --all --node "$(nodes | head -n1)"
        fi
        ;;
    peers | members)
        local node="${1:-1}"
        check_node "$node"
        gctr "$cmd" --node "$node"
        ;;
    logs)
        local name="${1:-discovery}"
        [[ -f "$DIR/logs/$name.log" ]] || die "no log for '$name'"
        tail -n 50 "$DIR/logs/$name.log"
        ;;
    kill)
        [[ -n "${1:-}" ]] || die "kill takes a node"
        check_node "$1"
        running "$1" || die "node $1 is not running"
        kill -KILL "$(pid_of "$1")"
        # Gone only once the kernel has released its ports and its WAL lock.
        local deadline=$((SECONDS + 5))
        while running "$1" && ((SECONDS < deadline)); do sleep 0.05; done
        echo "node $1 killed"
        ;;
    restart)
        [[ -n "${1:-}" ]] || die "restart takes a node"
        check_node "$1"
        [[ -d "$DIR/data/$1" ]] || die "node $1 never existed here (use 'add' for a new node)"
        require_running
        if running "$1"; then
            kill -TERM "$(pid_of "$1")"
            while running "$1"; do sleep 0.1; done
        fi
        start_node "$1"
        wait_caught_up "$1"
        ;;
    add)
        require_running
        local last
        last="$(nodes | tail -n1)"
        start_node "$((${last:-0} + 1))"
        ;;
    simulation) cmd_simulation "$@" ;;
    clean)
        stop_all
        rm -rf "$DIR"
        echo "removed $DIR"
        ;;
    help | -h | --help) usage ;;
    *)
        echo "cluster.sh: unknown command '$cmd'" >&2
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"

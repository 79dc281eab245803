# shellcheck shell=bash
# Shared harness for the shell cluster tests in tests/cluster/*.sh.
#
# A test sources this file and calls `cluster_test_init "$@"` first. That re-runs the
# test inside a fresh private network namespace, so the fixed ports a local cluster uses
# (discovery 8000, gossip 9000+, HTTP 8010+) can collide neither with anything on the
# machine nor with another test, and removes the namespace afterwards. Inside, the test
# gets a temporary directory, the gctr binary to test, and helpers that start processes,
# poll with deadlines and report. One exit trap stops every process the test started,
# shows their logs when the test failed, and removes every namespace and directory it
# made, whether the test passed, failed or was interrupted.
#
# Needs root (network namespaces) and iproute2. Safe under `set -euo pipefail`.
#
# Functions and variables for tests:
#   cluster_test_init "$@"     run the test in its own network namespace; set up the rest
#   GCTR                       the gctr binary ($GCTR_BIN, else target/release/gctr)
#   TEST_DIR                   a temporary directory, removed on exit (kept, with every
#                              log, when GCTR_TEST_KEEP=1)
#   TEST_ID                    a name unique to this run; prefix for the test's namespaces
#   TEST_NAME                  the test's file name without .sh, used in messages
#   netns_add NAME             create a namespace (loopback up), removed on exit
#   spawn NAME CMD...          start CMD in the background, output in $TEST_DIR/NAME.log
#   pid_of NAME                the pid of the latest process spawned as NAME
#   on_exit FUNC               call FUNC STATUS first thing in the exit trap (for
#                              processes started by other means)
#   use_cluster_script         drive scripts/cluster.sh ($CLUSTER) with this binary and a
#                              cluster directory in $TEST_DIR; stop it on exit, showing
#                              its logs if the test failed
#   wait_until DESC SECS CMD...  poll CMD every 0.1 s until it succeeds, else fail
#   hold_for DESC SECS CMD...  poll CMD every 0.1 s for SECS; fail if it ever fails
#   now_ms                     milliseconds since the epoch (for reporting durations)
#   hub_network HUB N...       nodes N... each in namespace `ns N` with `ip_of N`
#                              (10.231.0.N) on bridge br0 of namespace HUB, which also
#                              has an empty br1: moving a node's veth `vN` to br1 cuts
#                              it off; `gossip_of N`, `http_of N` its ports (9000+N,
#                              8010+N); `client N ARGS...` runs the gctr client from N's
#                              namespace against N; `all_report WANT N...` succeeds when
#                              each node reports WANT for $COUNTER; `sees N STATE
#                              NAME...` when N's membership shows each NAME in STATE
#   step MSG / pass MSG / fail MSG   progress line / success line / failure (exit 1)

GCTR_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TEST_NAME=$(basename "${BASH_SOURCE[-1]}" .sh)

# Seconds a spawned process gets to stop after SIGTERM before it is sent SIGKILL.
STOP_GRACE_SECONDS=3
# Log lines shown per process when a test fails.
LOG_TAIL_LINES=25

_spawned_pids=()
_exit_hooks=()
_spawned_names=()
_created_netns=()
_outer_netns=""
_inner_pid=""
_deadline=0

fail() {
    echo "FAIL: $TEST_NAME: $*" >&2
    exit 1
}

pass() {
    echo "PASS: $TEST_NAME: $*"
}

step() {
    echo "== $TEST_NAME: $*"
}

cluster_test_init() {
    [[ $EUID -eq 0 ]] || fail "needs root to create network namespaces"
    command -v ip >/dev/null || fail "needs the ip command (iproute2)"
    _resolve_gctr
    if _in_private_netns; then
        _setup_inside
    else
        _rerun_in_private_netns "$@"
    fi
}

# True when this shell runs in the namespace that _rerun_in_private_netns made for it.
_in_private_netns() {
    [[ -n ${GCTR_TEST_NETNS:-} ]] && ip netns identify $$ | grep -qxF "$GCTR_TEST_NETNS"
}

# Sets GCTR, building the release binary when it is missing or older than the sources.
# Runs before entering the private namespace, where cargo could not reach the network.
_resolve_gctr() {
    if [[ -n ${GCTR_BIN:-} ]]; then
        [[ -x $GCTR_BIN ]] || fail "GCTR_BIN=$GCTR_BIN is not an executable file"
        GCTR=$GCTR_BIN
        return
    fi
    local target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target=$GCTR_REPO/$target
    GCTR=$target/release/gctr
    if [[ ! -x $GCTR || -n $(find "$GCTR_REPO/src" "$GCTR_REPO/Cargo.toml" \
        "$GCTR_REPO/Cargo.lock" -newer "$GCTR" -print -quit) ]]; then
        echo "$TEST_NAME: building $GCTR" >&2
        (cd "$GCTR_REPO" && cargo build --release --quiet) || fail "cargo build --release failed"
    fi
}

# Runs this test again inside a new namespace and exits with its status. The inner run
# goes in the background so that a signal here can be passed on to it at once (a shell
# defers its traps until a foreground child ends); the inner run then cleans up after
# itself before this shell removes the namespace.
_rerun_in_private_netns() {
    _outer_netns="gctr-t-$$"
    trap _remove_outer_netns EXIT
    trap _stop_inner INT TERM
    ip netns add "$_outer_netns" || fail "cannot create network namespace $_outer_netns"
    ip -n "$_outer_netns" link set lo up
    GCTR_BIN=$GCTR GCTR_TEST_NETNS=$_outer_netns \
        ip netns exec "$_outer_netns" bash "${BASH_SOURCE[-1]}" "$@" &
    _inner_pid=$!
    local status
    while true; do
        status=0
        wait "$_inner_pid" || status=$?
        kill -0 "$_inner_pid" 2>/dev/null || break
    done
    exit "$status"
}

_stop_inner() {
    kill -TERM "$_inner_pid" 2>/dev/null || true
}

_remove_outer_netns() {
    local status=$?
    ip netns del "$_outer_netns" 2>/dev/null || true
    exit "$status"
}

_setup_inside() {
    # shellcheck disable=SC2034 # for the tests
    TEST_ID=$GCTR_TEST_NETNS
    TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gctr-$TEST_NAME.XXXXXX")
    trap _cleanup EXIT
    trap '_interrupted SIGINT 130' INT
    trap '_interrupted SIGTERM 143' TERM
}

_interrupted() {
    echo "FAIL: $TEST_NAME: interrupted by $1" >&2
    exit "$2"
}

_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    local hook
    for hook in "${_exit_hooks[@]}"; do
        "$hook" "$status"
    done
    _stop_spawned
    if ((status != 0)); then
        _show_logs
    fi
    local i
    for ((i = ${#_created_netns[@]} - 1; i >= 0; i--)); do
        ip netns del "${_created_netns[i]}" 2>/dev/null
    done
    if [[ -n ${GCTR_TEST_KEEP:-} ]]; then
        echo "$TEST_NAME: logs kept in $TEST_DIR" >&2
    else
        rm -rf "$TEST_DIR"
    fi
    exit "$status"
}

# SIGTERM to every spawned process group still running, SIGKILL to those left after
# the grace period.
_stop_spawned() {
    local pid
    local running=()
    for pid in "${_spawned_pids[@]}"; do
        _signal_group TERM "$pid" && running+=("$pid")
    done
    _set_deadline "$STOP_GRACE_SECONDS"
    while ((${#running[@]})) && (($(now_ms) < _deadline)); do
        sleep 0.1
        local still=()
        for pid in "${running[@]}"; do
            _signal_group 0 "$pid" && still+=("$pid")
        done
        running=("${still[@]}")
    done
    for pid in "${running[@]}"; do
        echo "$TEST_NAME: pid $pid ignored SIGTERM, sending SIGKILL" >&2
        _signal_group KILL "$pid"
    done
    for pid in "${_spawned_pids[@]}"; do
        wait "$pid" 2>/dev/null
    done
}

# Sends SIG to the process group a spawned PID leads (so its children go too), or to
# PID alone if it has not become a group leader yet.
_signal_group() {
    kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null
}

_show_logs() {
    local name
    for name in $(printf '%s\n' "${_spawned_names[@]}" | sort -u); do
        echo "--- $TEST_NAME: last $LOG_TAIL_LINES lines of $name.log" >&2
        tail -n "$LOG_TAIL_LINES" "$TEST_DIR/$name.log" >&2
    done
}

# Creates network namespace NAME with its loopback up; the exit trap removes it. Name
# namespaces "$TEST_ID-something" so that they are unique to this run.
netns_add() {
    ip netns add "$1" || fail "cannot create network namespace $1"
    _created_netns+=("$1")
    ip -n "$1" link set lo up
}

ns() { echo "$TEST_ID-n$1"; }
ip_of() { echo "10.231.0.$1"; }
gossip_of() { echo "$(ip_of "$1"):$((9000 + $1))"; }
http_of() { echo "$(ip_of "$1"):$((8010 + $1))"; }

# Builds the hub network (see the list at the top) for the nodes given after HUB.
hub_network() {
    local hub=$1 br n
    shift
    netns_add "$hub"
    for br in br0 br1; do
        ip -n "$hub" link add "$br" type bridge
        ip -n "$hub" link set "$br" up
    done
    for n in "$@"; do
        netns_add "$(ns "$n")"
        ip -n "$hub" link add "v$n" type veth peer name eth0 netns "$(ns "$n")"
        ip -n "$hub" link set "v$n" master br0 up
        ip -n "$(ns "$n")" addr add "$(ip_of "$n")/24" dev eth0
        ip -n "$(ns "$n")" link set eth0 up
    done
}

# Runs the gctr client from node N's own namespace against node N, so that it reaches N
# on either side of a cut.
client() {
    local n=$1
    shift
    ip netns exec "$(ns "$n")" "$GCTR" "$@" --http "$(http_of "$n")"
}

# Succeeds when every node listed after WANT reports WANT for $COUNTER; prints what
# each reports.
all_report() {
    local want=$1 n v seen="" ok=0
    shift
    for n in "$@"; do
        v=$(client "$n" get "$COUNTER" 2>&1) || v="error: $v"
        seen+="n$n=$v "
        [[ $v == "$want" ]] || ok=1
    done
    echo "${seen% }"
    return "$ok"
}

# Succeeds when node N sees every node named after STATE (n1, n2, ...) in that state; with STATE
# "not-alive", in any state but alive (suspect, dead).
sees() {
    local n=$1 state=$2 json
    shift 2
    json=$(client "$n" members --json) || return 1
    python3 -c '
import json, sys
members = {m["name"]: m["state"] for m in json.loads(sys.argv[1])["members"]}
want = sys.argv[3:]
print({name: members.get(name) for name in want})
if sys.argv[2] == "not-alive":
    ok = all(members.get(name) not in (None, "alive") for name in want)
else:
    ok = all(members.get(name) == sys.argv[2] for name in want)
sys.exit(0 if ok else 1)' \
        "$json" "$state" "$@"
}

# Starts CMD in the background with its output appended to $TEST_DIR/NAME.log. Call it
# from the test's own shell (not inside $(...)), or the exit trap cannot stop it. CMD
# runs in a session of its own (setsid, same pid), so a Ctrl-C at the terminal reaches
# only the test, whose trap then stops CMD with all its children.
spawn() {
    local name=$1
    shift
    (($#)) || fail "spawn $name: no command given"
    setsid "$@" >>"$TEST_DIR/$name.log" 2>&1 </dev/null &
    _spawned_pids+=("$!")
    _spawned_names+=("$name")
}

on_exit() {
    _exit_hooks+=("$1")
}

pid_of() {
    local i
    for ((i = ${#_spawned_names[@]} - 1; i >= 0; i--)); do
        if [[ ${_spawned_names[i]} == "$1" ]]; then
            echo "${_spawned_pids[i]}"
            return
        fi
    done
    fail "pid_of: nothing was spawned as $1"
}

# Polls CMD (run in a subshell, output captured) every 0.1 s until it succeeds; after
# SECS seconds fails, naming DESC and showing what the last try printed.
wait_until() {
    local desc=$1 seconds=$2
    shift 2
    _set_deadline "$seconds"
    local out
    while true; do
        if out=$("$@" 2>&1); then
            return 0
        fi
        if (($(now_ms) >= _deadline)); then
            fail "timed out after ${seconds}s waiting until $desc${out:+ (last try: $out)}"
        fi
        sleep 0.1
    done
}

# Polls CMD every 0.1 s for SECS seconds; fails, naming DESC and showing what CMD
# printed, the first time it fails.
hold_for() {
    local desc=$1 seconds=$2
    shift 2
    local start out
    start=$(now_ms)
    _set_deadline "$seconds"
    while (($(now_ms) < _deadline)); do
        out=$("$@" 2>&1) ||
            fail "$desc stopped holding after $(($(now_ms) - start)) ms of ${seconds}s${out:+ ($out)}"
        sleep 0.1
    done
}

now_ms() {
    local us=${EPOCHREALTIME//[.,]/}
    echo $((us / 1000))
}

# Sets _deadline (in now_ms terms) to SECS seconds from now: "2", "0.5", "1.25".
_set_deadline() {
    [[ $1 =~ ^([0-9]+)(\.([0-9]{1,3}))?$ ]] || fail "not a number of seconds: $1"
    local frac=${BASH_REMATCH[3]}000
    _deadline=$(($(now_ms) + 10#${BASH_REMATCH[1]} * 1000 + 10#${frac:0:3}))
}

# Sets CLUSTER to scripts/cluster.sh, running this test's binary with its state under
# $TEST_DIR/cluster, and stops that cluster on exit (showing its logs on failure).
use_cluster_script() {
    export GCTR_BIN=$GCTR
    export GCTR_CLUSTER_DIR=$TEST_DIR/cluster
    export GCTR_DISCOVERY=http://127.0.0.1:8000
    CLUSTER=$GCTR_REPO/scripts/cluster.sh
    on_exit _stop_cluster_script
}

_stop_cluster_script() {
    if (($1 != 0)); then
        local log
        for log in "$GCTR_CLUSTER_DIR"/logs/*.log; do
            [[ -e $log ]] || continue
            echo "--- $TEST_NAME: last $LOG_TAIL_LINES lines of cluster $(basename "$log")" >&2
            tail -n "$LOG_TAIL_LINES" "$log" >&2
        done
    fi
    "$CLUSTER" stop >/dev/null 2>&1
    # Whatever cluster.sh lost track of still has the cluster directory in its arguments.
    pkill -KILL -f -- "--wal $GCTR_CLUSTER_DIR/" 2>/dev/null || true
}

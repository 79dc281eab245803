#!/usr/bin/env bash
# Crash durability with real processes and the real CLI: four client streams increment a
# counter on node 1 of a 3-node cluster (each node with its WAL, fsync always) while node 1
# is SIGKILLed at a random moment; it restarts on its WAL. After every round the cluster
# must converge to a value between what was acknowledged and what was sent. Runs in a
# private network namespace (tests/cluster/lib.sh).
set -euo pipefail
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
cluster_test_init "$@"

use_cluster_script
ROUNDS=3
STREAMS=4
COUNTER=crash

# One client stream: increments COUNTER on node 1 by 1..3 until a request fails or the
# stop file appears, then writes what it sent and what was acknowledged.
stream() {
    local k=$1 sent=0 acked=0 by
    while [[ ! -e $TEST_DIR/stop ]]; do
        by=$((RANDOM % 3 + 1))
        sent=$((sent + by))
        if "$GCTR" inc "$COUNTER" --by "$by" --http 127.0.0.1:8010 >/dev/null 2>&1; then
            acked=$((acked + by))
        else
            # The node is gone: this request may or may not have been applied; no more
            # are sent, so "sent" stays tight.
            break
        fi
    done
    echo "$sent $acked" >"$TEST_DIR/stream-$k.result"
}

# Succeeds when nodes 1..3 all report the same value; prints it (or what each reports).
agreed_value() {
    local i v first="" seen=""
    for i in 1 2 3; do
        v=$("$GCTR" get "$COUNTER" --node "$i" 2>&1) || return 1
        seen+="$i=$v "
        [[ -z $first ]] && first=$v
        [[ $v == "$first" ]] || {
            echo "${seen% }"
            return 1
        }
    done
    echo "$first"
}

step "start: discovery and 3 nodes with WALs"
"$CLUSTER" start 3 >"$TEST_DIR/start.log" 2>&1 || fail "cluster.sh start failed: $(tail -n 5 "$TEST_DIR/start.log")"

total_sent=0
total_acked=0
for ((round = 1; round <= ROUNDS; round++)); do
    rm -f "$TEST_DIR/stop" "$TEST_DIR"/stream-*.result
    for ((k = 1; k <= STREAMS; k++)); do
        spawn "stream-$round-$k" bash -c "$(declare -f stream); TEST_DIR=$TEST_DIR GCTR=$GCTR COUNTER=$COUNTER stream $k"
    done
    # The crash moment: 0.3 to 1.5 s into the stream, chosen at random.
    sleep "$(printf '0.%03d' $((RANDOM % 1000)))"
    sleep 0.3
    "$CLUSTER" kill 1 >/dev/null || fail "cluster.sh kill 1 failed"
    touch "$TEST_DIR/stop"
    for ((k = 1; k <= STREAMS; k++)); do
        wait_until "stream $k of round $round ends" 10 test -e "$TEST_DIR/stream-$k.result"
        read -r sent acked <"$TEST_DIR/stream-$k.result"
        total_sent=$((total_sent + sent))
        total_acked=$((total_acked + acked))
    done
    "$CLUSTER" restart 1 >"$TEST_DIR/restart.log" 2>&1 ||
        fail "cluster.sh restart 1 failed: $(tail -n 3 "$TEST_DIR/restart.log")"
    wait_until "the 3 nodes agree after round $round" 20 agreed_value
    value=$(agreed_value)
    ((total_acked <= value && value <= total_sent)) ||
        fail "round $round: converged value $value is outside acknowledged $total_acked .. sent $total_sent"
    pass "round $round: acknowledged $total_acked <= converged $value <= sent $total_sent"
done

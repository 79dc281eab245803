#!/usr/bin/env bash
# The reference systems' cluster scenarios, driven through scripts/cluster.sh exactly as a
# user would: every node healthy; an increment on one node reaches all; a node added later
# is discovered by all and converges; a node killed and restarted on its WAL catches up; a
# simulation of random operations ends with every node agreeing on the exact expected
# value; negative values are read and compared correctly. Runs in a private network
# namespace (tests/cluster/lib.sh), so the cluster's fixed ports are its own.
set -euo pipefail
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
cluster_test_init "$@"

use_cluster_script

# Succeeds when every node in 1..N reports VALUE for COUNTER; prints what each reports.
all_report() {
    local n=$1 counter=$2 want=$3 i v seen="" ok=0
    for ((i = 1; i <= n; i++)); do
        v=$("$GCTR" get "$counter" --node "$i" 2>&1) || v="error: $v"
        seen+="$i=$v "
        [[ $v == "$want" ]] || ok=1
    done
    echo "${seen% }"
    return "$ok"
}

# Succeeds when node I lists every other node of 1..N as a reachable peer.
knows_all() {
    local i=$1 n=$2 json j
    json=$("$GCTR" peers --node "$i" --json) || return 1
    for ((j = 1; j <= n; j++)); do
        ((j == i)) && continue
        python3 -c 'import json,sys
peers = json.loads(sys.argv[1])["peers"]
sys.exit(0 if any(p["name"] == sys.argv[2] and p["reachable"] for p in peers) else 1)' \
            "$json" "$j" || return 1
    done
}

step "start: discovery and 5 nodes"
"$CLUSTER" start 5 >"$TEST_DIR/start.log" 2>&1 || fail "cluster.sh start failed: $(tail -n 5 "$TEST_DIR/start.log")"
for i in 1 2 3 4 5; do
    wait_until "node $i knows the other four" 10 knows_all "$i" 5
done
"$CLUSTER" status >"$TEST_DIR/status.out" || fail "cluster.sh status failed"
[[ $(grep -c ': running' "$TEST_DIR/status.out") == 6 ]] || fail "status: $(cat "$TEST_DIR/status.out")"
pass "every node is healthy and knows the others"

step "an increment on node 2 reaches every node"
[[ $("$CLUSTER" inc 2 views) == 1 ]] || fail "cluster.sh inc 2 views did not answer 1"
wait_until "every node reports views=1" 10 all_report 5 views 1
pass "an increment on one node reached all"

step "a node added later is discovered by all and converges"
"$CLUSTER" add >/dev/null || fail "cluster.sh add failed"
for i in 1 2 3 4 5 6; do
    wait_until "node $i knows all six" 10 knows_all "$i" 6
done
wait_until "node 6 catches up on views" 10 all_report 6 views 1
pass "node 6 was discovered by all and converged"

step "a node killed, written around, and restarted catches up"
"$CLUSTER" kill 3 >/dev/null || fail "cluster.sh kill 3 failed"
for i in 1 2 4; do "$CLUSTER" inc "$i" views >/dev/null; done
"$CLUSTER" restart 3 >/dev/null || fail "cluster.sh restart 3 failed"
wait_until "every node reports views=4 after the restart" 15 all_report 6 views 4
pass "the restarted node caught up"

step "negative values"
for _ in 1 2 3; do "$CLUSTER" dec 4 >/dev/null; done
"$CLUSTER" inc 5 >/dev/null
wait_until "every node reports default=-2" 10 all_report 6 default -2
"$CLUSTER" counter >"$TEST_DIR/counter.out" || fail "cluster.sh counter says the nodes disagree: $(cat "$TEST_DIR/counter.out")"
grep -q "all 6 nodes agree" "$TEST_DIR/counter.out" || fail "cluster.sh counter: $(cat "$TEST_DIR/counter.out")"
pass "every node agrees on -2"

step "simulation: random operations across the nodes"
"$CLUSTER" simulation 4 >"$TEST_DIR/simulation.out" 2>&1 ||
    fail "simulation found disagreement: $(tail -n 10 "$TEST_DIR/simulation.out")"
pass "$(tail -n 1 "$TEST_DIR/simulation.out")"

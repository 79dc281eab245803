#!/usr/bin/env bash
# `docker compose restart` of every node, one at a time, while streams of increments go
# round robin to all five: a restarting node answers nothing (its requests count as sent,
# not acknowledged) and the others keep taking writes. Afterwards every node agrees on a
# value between acknowledged and sent: zero acknowledged writes lost.
set -euo pipefail
# shellcheck source=tests/docker/lib.sh
source "$(dirname "$0")/lib.sh"
docker_test_init

STREAMS=4
COUNTER=rolling

# The total of increments SERVICE took itself (its own origin's p), from its view.
own_total() {
    "$GCTR" get "$COUNTER" --json --http "$(http_of "$1")" | python3 -c 'import json, sys
name = sys.argv[1]
v = json.load(sys.stdin)
print(sum(o["p"] for o in v["origins"] if o["origin"].startswith(name + "/")))' "$1"
}

own_total_above() {
    local now
    now=$(own_total "$1") && (($2 < now))
}

cluster_up
pass "5 nodes up"
for ((k = 1; k <= STREAMS; k++)); do
    # Each stream starts at another node, so every node has a stream on it at any time.
    targets=("${NODES[@]:k % 5}" "${NODES[@]:0:k % 5}")
    start_stream "$k" "$COUNTER" "${targets[@]}"
done
wait_until "the streams are acknowledged" 20 \
    bash -c "(( \$('$GCTR' get $COUNTER --http $(http_of node1)) > 50 ))"
for s in "${NODES[@]}"; do
    step "compose restart $s under load"
    start=$(now_ms)
    compose restart --timeout 10 "$s" >/dev/null 2>&1 || fail "compose restart $s failed"
    wait_until "$s answers" 30 "$GCTR" health --http "$(http_of "$s")" --timeout 1s
    before=$(own_total "$s")
    wait_until "$s acknowledges writes of its own again" 30 own_total_above "$s" "$before"
    pass "$s restarted and serving in $(($(now_ms) - start)) ms"
done
stop_streams
wait_until "every node agrees" 30 agreed_value "$COUNTER"
agreed=$(agreed_value "$COUNTER")
((ACKED <= agreed && agreed <= SENT)) ||
    fail "the nodes agree on $agreed, not within [acknowledged $ACKED, sent $SENT]"
((ACKED > 0)) || fail "no increment was acknowledged"
pass "5 rolling restarts under load: acknowledged $ACKED <= agreed $agreed <= sent $SENT"

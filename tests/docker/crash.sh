#!/usr/bin/env bash
# `docker kill` (SIGKILL) of a node's container while streams of increments go to it;
# the container is started again on its volume. Its recovered value, and the value the
# whole cluster then agrees on, lie between what was acknowledged and what was sent: no
# acknowledged increment is lost, none is counted twice.
set -euo pipefail
# shellcheck source=tests/docker/lib.sh
source "$(dirname "$0")/lib.sh"
docker_test_init

ROUNDS=2
STREAMS=3
VICTIM=node3
COUNTER=crash
# A stream ends at its first failed request once it has had one acknowledged (before
# that, a restarted node may be holding writes for a moment), so "sent" stays tight.
STREAM_STOP_ON_FAILURE=1

cluster_up
pass "5 nodes up"
id=$(cid "$VICTIM")
origin=$("$GCTR" members --json --http "$(http_of "$VICTIM")" | python3 -c 'import json, sys
m = json.load(sys.stdin)
print(next(x["origin"] for x in m["members"] if x["name"] == m["self"]))')
sent_total=0 acked_total=0
for ((round = 1; round <= ROUNDS; round++)); do
    step "round $round: streams to $VICTIM, then docker kill"
    base=$(value_on "$VICTIM" "$COUNTER")
    for ((k = 1; k <= STREAMS; k++)); do
        start_stream "$k" "$COUNTER" "$VICTIM"
    done
    wait_until "$VICTIM acknowledges increments" 20 \
        bash -c "(( \$('$GCTR' get $COUNTER --http $(http_of "$VICTIM")) > $base + 20 ))"
    sleep "0.$((RANDOM % 10))"
    "$DOCKER_SH" kill "$VICTIM" >/dev/null
    stop_streams
    sent_total=$((sent_total + SENT)) acked_total=$((acked_total + ACKED))
    step "round $round: $ACKED acknowledged of $SENT sent; starting $VICTIM on its volume"
    "$DOCKER_SH" restart "$VICTIM" >/dev/null
    [[ $(cid "$VICTIM") == "$id" ]] || fail "$VICTIM has another container"
    recovered=$(value_on "$VICTIM" "$COUNTER")
    ((acked_total <= recovered && recovered <= sent_total)) ||
        fail "$VICTIM recovered $recovered, not within [$acked_total, $sent_total]"
    wait_until "every node agrees" 30 agreed_value "$COUNTER"
    agreed=$(agreed_value "$COUNTER")
    ((acked_total <= agreed && agreed <= sent_total)) ||
        fail "the cluster agrees on $agreed, not within [$acked_total, $sent_total]"
    pass "round $round: acknowledged $acked_total <= recovered $recovered = agreed $agreed <= sent $sent_total"
done
now=$("$GCTR" members --json --http "$(http_of "$VICTIM")" | python3 -c 'import json, sys
m = json.load(sys.stdin)
print(next(x["origin"] for x in m["members"] if x["name"] == m["self"]))')
[[ $now == "$origin" ]] || fail "$VICTIM came back as $now, not as $origin: it lost its volume's data"
pass "$VICTIM kept its origin $origin through $ROUNDS kills"

#!/usr/bin/env bash
# A real network partition. Four nodes, each in its own network namespace, are joined by
# veth pairs to one bridge (br0) in a hub namespace, on 10.231.0.0/24 (addresses that
# exist only inside these namespaces). After the nodes agree on some first writes, the
# test cuts the cluster in two by moving side B's hub-side veth ends to a second bridge
# (br1): each side still talks within itself, nothing crosses. It checks that each side
# converges on its own writes and that for a while neither sees the other's, with every
# write acknowledged on both sides (gctr is AP), and that each side's membership declares
# the other side dead. The cut lasts a minute; then it heals by moving the ends back,
# and with no restart the nodes must become one membership again and every node report
# the exact sum of all writes, a negative number.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cluster_test_init "$@"

NODES=(1 2 3 4)
SIDE_A=(1 2)
SIDE_B=(3 4)
COUNTER=partition
HUB=$TEST_ID-hub
# How long the test checks that the cut holds (GCTR_PARTITION_HOLD overrides): far longer
# than the nodes' 1 s connect timeout, their 3 s TCP user timeout and the few seconds
# membership takes to declare the other side dead, so the heal must reconnect everything
# and revive dead members, with no restart.
PARTITION_HOLD_SECONDS=${GCTR_PARTITION_HOLD:-60}

node_list() {
    local IFS=,
    echo "${*/#/n}"
}

# Succeeds while each side reports only its own writes (a_value and b_value, set at
# the cut).
sides_apart() {
    all_report "$a_value" "${SIDE_A[@]}" && all_report "$b_value" "${SIDE_B[@]}"
}

side_of() {
    local n
    for n in "${SIDE_B[@]}"; do
        [[ $n == "$1" ]] && echo b && return
    done
    echo a
}

# The sum of every acknowledged write, and of those made on each side since the cut.
TOTAL=0
declare -A SINCE_CUT=([a]=0 [b]=0)

# Increments (DELTA > 0) or decrements node N's counter. Every write must be
# acknowledged, partition or not.
write() {
    local n=$1 delta=$2 verb=inc by=$2 out
    if ((delta < 0)); then
        verb=dec
        by=$((-delta))
    fi
    out=$(client "$n" "$verb" "$COUNTER" --by "$by" 2>&1) ||
        fail "n$n did not acknowledge $verb --by $by: $out"
    TOTAL=$((TOTAL + delta))
    local side
    side=$(side_of "$n")
    SINCE_CUT[$side]=$((SINCE_CUT[$side] + delta))
}

step "network: hub namespace $HUB, bridges br0 and br1, $(node_list "${NODES[@]}") on br0"
hub_network "$HUB" "${NODES[@]}"

step "starting $(node_list "${NODES[@]}"), each seeded with the others"
for n in "${NODES[@]}"; do
    seeds=()
    for m in "${NODES[@]}"; do
        ((m == n)) || seeds+=("$(gossip_of "$m")")
    done
    spawn "n$n" ip netns exec "$(ns "$n")" "$GCTR" node --name "n$n" \
        --addr "$(gossip_of "$n")" --http "$(http_of "$n")" \
        --seeds "$(IFS=,; echo "${seeds[*]}")" --gossip-interval 50ms
done
for n in "${NODES[@]}"; do
    wait_until "n$n serves HTTP" 10 client "$n" get "$COUNTER"
done

step "first writes; all nodes must converge"
write 1 3
write 3 4
write 2 -2
wait_until "every node reports $TOTAL" 10 all_report "$TOTAL" "${NODES[@]}"
# Each side can declare only members it knows of: a node that has not yet heard of one on
# the other side when the cut falls never will until the heal.
for n in "${NODES[@]}"; do
    wait_until "n$n sees every node alive" 10 sees "$n" alive $(node_list "${NODES[@]}" | tr , ' ')
done

step "cutting the cluster: side A $(node_list "${SIDE_A[@]}"), side B $(node_list "${SIDE_B[@]}") on br1"
for n in "${SIDE_B[@]}"; do
    ip -n "$HUB" link set "v$n" master br1
done
at_cut=$TOTAL
SINCE_CUT=([a]=0 [b]=0)
write 1 10
write 2 1
write 3 -30
write 4 2
a_value=$((at_cut + SINCE_CUT[a]))
b_value=$((at_cut + SINCE_CUT[b]))
((a_value != TOTAL && b_value != TOTAL)) || fail "the writes must tell the sides apart"
wait_until "side A reports its own writes, $a_value" 10 all_report "$a_value" "${SIDE_A[@]}"
wait_until "side B reports its own writes, $b_value" 10 all_report "$b_value" "${SIDE_B[@]}"
for n in "${SIDE_A[@]}"; do
    wait_until "n$n declares side B dead" 20 sees "$n" dead $(node_list "${SIDE_B[@]}" | tr , ' ')
done
for n in "${SIDE_B[@]}"; do
    wait_until "n$n declares side A dead" 20 sees "$n" dead $(node_list "${SIDE_A[@]}" | tr , ' ')
done
hold_for "the partition (A at $a_value, B at $b_value)" "$PARTITION_HOLD_SECONDS" sides_apart

step "healing: side B back on br0"
for n in "${SIDE_B[@]}"; do
    ip -n "$HUB" link set "v$n" master br0
done
healed_at=$(now_ms)
for n in "${NODES[@]}"; do
    wait_until "n$n sees every node alive again" 30 sees "$n" alive $(node_list "${NODES[@]}" | tr , ' ')
done
pass "one membership again, without a restart" "$(($(now_ms) - healed_at)) ms after the heal"
wait_until "every node reports the exact sum $TOTAL after the heal" 30 \
    all_report "$TOTAL" "${NODES[@]}"
pass "partitioned sides at $a_value and $b_value healed to $TOTAL on every node" \
    "in $(($(now_ms) - healed_at)) ms"

#!/usr/bin/env bash
# LAN discovery across real network namespaces. Four nodes, each in its own namespace,
# are joined by veth pairs to one bridge in a hub namespace on 10.232.0.0/24. They have
# no seeds and no discovery server: only --lan-discovery, nodes 1 and 2 with the cluster
# name blue, nodes 3 and 4 with green. Each pair must find the other by broadcast, and
# the two clusters must stay apart on the same LAN: a write on a blue node reaches the
# other blue node and no green one.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cluster_test_init "$@"

NODES=(1 2 3 4)
HUB=$TEST_ID-hub
BROADCAST=10.232.0.255

ns() { echo "$TEST_ID-n$1"; }
ip_of() { echo "10.232.0.$1"; }
gossip_of() { echo "$(ip_of "$1"):9000"; }
http_of() { echo "$(ip_of "$1"):8010"; }
cluster_of() { if (($1 <= 2)); then echo blue; else echo green; fi; }

client() {
    local n=$1
    shift
    ip netns exec "$(ns "$n")" "$GCTR" "$@" --http "$(http_of "$n")"
}

# Succeeds when node N lists exactly the members named after it, all alive.
members_are() {
    local n=$1 json
    shift
    json=$(client "$n" members --json) || return 1
    python3 -c '
import json, sys
members = json.loads(sys.argv[1])["members"]
want = sorted(sys.argv[2:])
got = sorted(m["name"] for m in members)
alive = all(m["state"] == "alive" for m in members)
print(f"members {got}, want {want} all alive")
sys.exit(0 if got == want and alive else 1)' "$json" "$@"
}

step "network: hub namespace $HUB with one bridge, n1..n4 on $(ip_of 0)/24"
netns_add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
for n in "${NODES[@]}"; do
    netns_add "$(ns "$n")"
    ip -n "$HUB" link add "v$n" type veth peer name eth0 netns "$(ns "$n")"
    ip -n "$HUB" link set "v$n" master br0 up
    ip -n "$(ns "$n")" addr add "$(ip_of "$n")/24" brd + dev eth0
    ip -n "$(ns "$n")" link set eth0 up
done

step "starting n1 n2 (cluster blue) and n3 n4 (cluster green), no seeds, no discovery"
for n in "${NODES[@]}"; do
    spawn "n$n" ip netns exec "$(ns "$n")" "$GCTR" node --name "n$n" \
        --addr "$(gossip_of "$n")" --http "$(http_of "$n")" \
        --lan-discovery --cluster "$(cluster_of "$n")" --lan-broadcast "$BROADCAST"
done
for n in "${NODES[@]}"; do
    wait_until "n$n serves HTTP" 10 client "$n" get
done

started=$(now_ms)
wait_until "blue's nodes find each other" 10 members_are 1 n1 n2
wait_until "blue's nodes find each other" 10 members_are 2 n1 n2
wait_until "green's nodes find each other" 10 members_are 3 n3 n4
wait_until "green's nodes find each other" 10 members_are 4 n3 n4
pass "each cluster formed by LAN discovery alone" "in $(($(now_ms) - started)) ms"

client 1 inc lan --by 7 >/dev/null
wait_until "n2 sees blue's write" 10 test "$(client 2 get lan)" = 7
hold_for "green stays apart" 3 bash -c "
    [[ \$(ip netns exec $(ns 3) $GCTR get lan --http $(http_of 3)) == 0 ]] &&
    [[ \$(ip netns exec $(ns 4) $GCTR get lan --http $(http_of 4)) == 0 ]]"
members_are 3 n3 n4 >/dev/null || fail "green learned of blue"
pass "blue and green share the LAN and stay two clusters"

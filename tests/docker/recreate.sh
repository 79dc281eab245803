#!/usr/bin/env bash
# A node's container is removed and created again on the same volume with another
# address (its old one is taken meanwhile): it comes back under the same origin, with
# its data, and rejoins by name; every member sees it alive at the new address and
# writes on it and elsewhere converge exactly.
set -euo pipefail
# shellcheck source=tests/docker/lib.sh
source "$(dirname "$0")/lib.sh"
docker_test_init

VICTIM=node3
COUNTER=recreate

# SERVICE's own member entry, as the node itself reports it: "ORIGIN GOSSIP_ADDR".
self_entry() {
    "$GCTR" members --json --http "$(http_of "$1")" | python3 -c 'import json, sys
m = json.load(sys.stdin)
me = next(x for x in m["members"] if x["name"] == m["self"])
print(me["origin"], me["gossip_addr"])'
}

# Succeeds when SERVICE sees VICTIM alive at ADDR.
sees_victim_at() {
    "$GCTR" members --json --http "$(http_of "$1")" | python3 -c 'import json, sys
name, addr = sys.argv[1:]
m = json.load(sys.stdin)["members"]
v = [x for x in m if x["name"] == name]
sys.exit(0 if v and v[0]["state"] == "alive" and v[0]["gossip_addr"] == addr else 1)' \
        "$VICTIM" "$2"
}

cluster_up
pass "5 nodes up"
expected=0
for s in "${NODES[@]}"; do
    inc_on "$s" 3 "$COUNTER"
    expected=$((expected + 3))
done
wait_all_equal "$COUNTER" "$expected" 20
read -r origin old_addr <<<"$(self_entry "$VICTIM")"
old_ip=${old_addr%:*}

step "remove $VICTIM's container, take its address, create it again"
network=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' \
    "$(cid "$VICTIM")")
compose rm --stop --force "$VICTIM" >/dev/null 2>&1 || fail "compose rm $VICTIM failed"
# A placeholder on the old address, so the new container must get another one: a
# discovery server no node knows of, so nothing gossips with it.
squatter=$(docker run -d --network "$network" --ip "$old_ip" \
    "$GCTR_IMAGE" discovery --bind 0.0.0.0)
track_container "$squatter"
compose up -d --no-deps "$VICTIM" >/dev/null 2>&1 || fail "compose up $VICTIM failed"
wait_until "$VICTIM answers" 30 "$GCTR" health --http "$(http_of "$VICTIM")" --timeout 1s
read -r new_origin new_addr <<<"$(self_entry "$VICTIM")"
[[ $new_addr != "$old_addr" ]] || fail "$VICTIM came back at its old address $old_addr"
[[ $new_origin == "$origin" ]] ||
    fail "$VICTIM came back as $new_origin, not $origin: its volume's data was not used"
pass "$VICTIM is back as $origin at $new_addr (was $old_addr)"

for s in "${NODES[@]}"; do
    [[ $s == "$VICTIM" ]] && continue
    wait_until "$s sees $VICTIM alive at $new_addr" 30 sees_victim_at "$s" "$new_addr"
done
wait_until "$VICTIM sees 5 members alive" 30 _alive_members_are 5 "$VICTIM"
# Retried until it succeeds: the key makes an attempt that failed yet counted count once.
wait_until "$VICTIM takes writes" 20 "$GCTR" inc "$COUNTER" --by 5 --id recreate-victim-write \
    --http "$(http_of "$VICTIM")"
inc_on node1 7 "$COUNTER"
expected=$((expected + 12))
wait_all_equal "$COUNTER" "$expected" 20
pass "every node sees $VICTIM alive at $new_addr; writes converge to $expected"

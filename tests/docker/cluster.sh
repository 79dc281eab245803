#!/usr/bin/env bash
# The Compose cluster from the image: the image is small, runs as a non-root user and
# checks its own health; increments on every node converge to the exact sum; a node
# stops cleanly and at once on SIGTERM; `docker network disconnect` cuts two nodes off,
# both sides take writes, and once reconnected every node reports the exact sum.
set -euo pipefail
# shellcheck source=tests/docker/lib.sh
source "$(dirname "$0")/lib.sh"
docker_test_init

step "the image"
size=$(docker image inspect -f '{{.Size}}' "$GCTR_IMAGE")
((size < 10 * 1024 * 1024)) || fail "image is $size bytes, over 10 MiB"
user=$(docker image inspect -f '{{.Config.User}}' "$GCTR_IMAGE")
[[ $user =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || fail "image user is '$user', not a numeric non-root UID"
health=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$GCTR_IMAGE")
[[ $health == '["CMD","/gctr","health"]' ]] || fail "unexpected HEALTHCHECK $health"
pass "image of $size bytes, user $user, HEALTHCHECK $health"

step "compose up"
cluster_up
pass "5 nodes up, each sees 5 alive"
id=$(cid node1)
uid=$(docker top "$id" -o pid,uid,comm | awk '$3 == "gctr" { print $2 }')
[[ $uid == "${user%%:*}" ]] || fail "node1 runs as uid '$uid', not ${user%%:*}"
healthy() {
    local status
    status=$(docker inspect -f '{{.State.Health.Status}}' "$1")
    [[ $status == healthy ]] || {
        echo "$status"
        return 1
    }
}
wait_until "node1's container is healthy" 30 healthy "$id"

step "increments on every node"
expected=0
for _ in 1 2 3; do
    for s in "${NODES[@]}"; do
        by=$((RANDOM % 9 + 1))
        inc_on "$s" "$by" hits
        expected=$((expected + by))
    done
done
wait_all_equal hits "$expected" 20
pass "15 increments on 5 nodes: every node reports $expected"

step "SIGTERM stops a node cleanly"
id=$(cid node5)
start=$(now_ms)
docker stop --time 10 "$id" >/dev/null
took=$(($(now_ms) - start))
code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
[[ $code == 0 ]] || fail "node5 exited $code on SIGTERM"
((took < 10000)) || fail "node5 took ${took} ms to stop (grace is 10 s)"
docker logs "$id" 2>&1 | grep -q "node node5 stopped" || fail "node5 did not log its clean stop"
docker start "$id" >/dev/null
wait_until "node5 answers again" 30 "$GCTR" health --http "$(http_of node5)" --timeout 1s
wait_all_equal hits "$expected" 20
pass "node5 stopped in ${took} ms with exit 0, started again on its volume with $expected"

step "partition: disconnect node4 and node5"
"$DOCKER_SH" partition node4 >/dev/null
"$DOCKER_SH" partition node5 >/dev/null
main=0
for s in node1 node2 node3; do
    inc_on "$s" 100 hits
    main=$((main + 100))
done
cut=0
for s in node4 node5; do
    docker exec "$(cid "$s")" /gctr inc hits --by 7 >/dev/null || fail "no write on $s while cut off"
    cut=$((cut + 7))
done
total=$((expected + main + cut))
wait_until "node1..3 agree on $((expected + main))" 20 \
    bash -c "for p in $(http_of node1) $(http_of node2) $(http_of node3); do
        [[ \$('$GCTR' get hits --http \$p) == $((expected + main)) ]] || exit 1; done"
for s in node4 node5; do
    v=$(docker exec "$(cid "$s")" /gctr get hits)
    [[ $v == $((expected + 7)) ]] || fail "$s reports $v while cut off, want $((expected + 7))"
done
pass "both sides took writes: main side $((expected + main)), each cut-off node $((expected + 7))"

step "heal"
"$DOCKER_SH" heal node4 >/dev/null
"$DOCKER_SH" heal node5 >/dev/null
wait_all_equal hits "$total" 30
for s in "${NODES[@]}"; do
    wait_until "$s sees 5 members alive" 30 _alive_members_are 5 "$s"
done
pass "reconnected: every node reports the exact sum $total"

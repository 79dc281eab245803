# shellcheck shell=bash
# Shared harness for the container tests in tests/docker/*.sh: the Compose cluster of
# docker-compose.yml, run from the image scripts/docker.sh builds.
#
# A test sources this file and calls `docker_test_init` first. When no Docker engine
# answers (or Compose is missing) the test prints why and exits 0 (skipped). Otherwise
# it gets an image and a Compose project of its own (unique names, a random subnet,
# free host ports), so runs never collide; one exit trap stops the load streams, shows
# the containers' logs when the test failed, and removes every container, network,
# volume and image the test made, whether it passed, failed or was interrupted.
#
# Functions and variables for tests:
#   docker_test_init           skip without Docker; build the image; set up the rest
#   GCTR                       the gctr binary the image holds, run here as the client
#   TEST_DIR                   a temporary directory, removed on exit
#   TEST_ID                    a name unique to this run (the Compose project name)
#   DOCKER_SH                  scripts/docker.sh, driving this test's project
#   NODES                      the node services: node1 .. node5
#   cluster_up                 start the cluster; wait until every node sees 5 alive
#   compose ARGS...            docker compose on this test's project
#   cid SERVICE                the service's container id
#   http_of SERVICE            the node's HTTP address on this host (127.0.0.1:PORT)
#   value_on SERVICE [COUNTER] the node's value of COUNTER (default: default)
#   inc_on SERVICE BY [COUNTER]  one increment through the published port
#   wait_all_equal COUNTER EXPECTED SECS   every node reports EXPECTED, else fail
#   start_stream K COUNTER SERVICE...  increments by 1..3 until $TEST_DIR/stop exists,
#                              round robin over SERVICE...; each request that fails is
#                              counted sent, not acknowledged (with
#                              STREAM_STOP_ON_FAILURE=1, a failure after the stream's
#                              first acknowledgement ends it); writes "sent acked" to
#                              $TEST_DIR/stream-K.result
#   stop_streams               create the stop file, wait for the streams; sets SENT
#                              and ACKED to their sums
#   track_container ID         remove container ID and its anonymous volumes on exit
#                              (one started by hand)
#   now_ms                     milliseconds since the epoch (for reporting durations)
#   wait_until / fail / pass / step, as in tests/cluster/lib.sh

GCTR_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TEST_NAME=$(basename "${BASH_SOURCE[-1]}" .sh)
DOCKER_SH=$GCTR_REPO/scripts/docker.sh
NODES=(node1 node2 node3 node4 node5)
# Log lines shown per container when a test fails.
LOG_TAIL_LINES=30

_stream_pids=()
_tracked_containers=()

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

skip() {
    echo "SKIP: $TEST_NAME: $*"
    exit 0
}

docker_test_init() {
    command -v docker >/dev/null || skip "no docker command"
    docker info >/dev/null 2>&1 || skip "no Docker engine answers (docker info failed)"
    docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null ||
        skip "neither docker compose nor docker-compose is installed"
    command -v python3 >/dev/null || fail "needs python3"
    TEST_ID="gctrt${TEST_NAME//[^a-z0-9]/}$$$RANDOM"
    TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gctr-$TEST_NAME.XXXXXX")
    export COMPOSE_PROJECT_NAME=$TEST_ID
    export GCTR_IMAGE="gctr-test:$TEST_ID"
    trap _cleanup EXIT
    trap '_interrupted SIGINT 130' INT
    trap '_interrupted SIGTERM 143' TERM
    _pick_ports
    step "building the image $GCTR_IMAGE"
    "$DOCKER_SH" build >"$TEST_DIR/build.log" 2>&1 || {
        cat "$TEST_DIR/build.log" >&2
        fail "scripts/docker.sh build failed"
    }
    local target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target=$GCTR_REPO/$target
    GCTR=$target/x86_64-unknown-linux-gnu/docker/gctr
    [[ -x $GCTR ]] || fail "no client binary at $GCTR after the build"
}

_interrupted() {
    echo "FAIL: $TEST_NAME: interrupted by $1" >&2
    exit "$2"
}

# Free ports on this host for discovery and the nodes' HTTP, fixed for the whole run
# (a restarted container gets the same port back, unlike with ports Docker picks).
_pick_ports() {
    local ports
    ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
    read -r GCTR_PUBLISH_DISCOVERY GCTR_PUBLISH_1 GCTR_PUBLISH_2 GCTR_PUBLISH_3 \
        GCTR_PUBLISH_4 GCTR_PUBLISH_5 <<<"$ports"
    export GCTR_PUBLISH_DISCOVERY GCTR_PUBLISH_1 GCTR_PUBLISH_2 GCTR_PUBLISH_3 \
        GCTR_PUBLISH_4 GCTR_PUBLISH_5
}

_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    touch "$TEST_DIR/stop"
    local pid
    for pid in "${_stream_pids[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if ((status != 0)); then
        compose logs --no-color --tail "$LOG_TAIL_LINES" >&2 2>&1
    fi
    local id
    for id in "${_tracked_containers[@]}"; do
        docker rm -f -v "$id" >/dev/null 2>&1
    done
    compose down --volumes --remove-orphans --timeout 3 >/dev/null 2>&1 ||
        echo "$TEST_NAME: compose down failed for project $TEST_ID" >&2
    docker image rm "$GCTR_IMAGE" >/dev/null 2>&1
    rm -rf "$TEST_DIR"
    exit "$status"
}

compose() {
    "$DOCKER_SH" compose "$@"
}

track_container() {
    _tracked_containers+=("$1")
}

cid() {
    local id
    id=$(compose ps -q "$1") || fail "compose ps $1 failed"
    [[ -n $id ]] || fail "$1 has no container"
    echo "$id"
}

# The published HTTP port of node N (node1 .. node5) is GCTR_PUBLISH_N.
http_of() {
    local var=GCTR_PUBLISH_${1#node}
    echo "127.0.0.1:${!var}"
}

value_on() {
    "$GCTR" get "${2:-default}" --http "$(http_of "$1")"
}

inc_on() {
    "$GCTR" inc "${3:-default}" --by "$2" --http "$(http_of "$1")" >/dev/null ||
        fail "increment by $2 on $1 failed"
}

# Starts the cluster on a random subnet (another one if that one is taken), then waits
# until every node answers and sees all five nodes alive.
cluster_up() {
    local try
    for try in 1 2 3 4 5; do
        export GCTR_SUBNET="172.$((24 + RANDOM % 8)).$((RANDOM % 256)).0/24"
        compose up -d >"$TEST_DIR/up.log" 2>&1 && break
        grep -qi "overlap" "$TEST_DIR/up.log" || {
            cat "$TEST_DIR/up.log" >&2
            fail "compose up failed"
        }
        compose down --volumes --remove-orphans >/dev/null 2>&1
        ((try < 5)) || fail "no free subnet found in 5 tries"
    done
    local s
    for s in "${NODES[@]}"; do
        wait_until "$s answers" 60 "$GCTR" health --http "$(http_of "$s")" --timeout 1s
    done
    for s in "${NODES[@]}"; do
        wait_until "$s sees 5 members alive" 30 _alive_members_are 5 "$s"
    done
}

# Succeeds when SERVICE's member list has exactly N alive members.
_alive_members_are() {
    local n
    n=$("$GCTR" members --json --http "$(http_of "$2")" |
        python3 -c 'import json, sys
print(sum(m["state"] == "alive" for m in json.load(sys.stdin)["members"]))') || return 1
    [[ $n == "$1" ]] || {
        echo "$n alive"
        return 1
    }
}

# Succeeds when every node reports EXPECTED for COUNTER; else prints what they report.
_all_equal() {
    local counter=$1 expected=$2 s v seen="" same=1
    for s in "${NODES[@]}"; do
        v=$(value_on "$s" "$counter" 2>&1) || v="unreachable"
        seen+="$s=$v "
        [[ $v == "$expected" ]] || same=0
    done
    ((same)) || {
        echo "want $expected: $seen"
        return 1
    }
}

wait_all_equal() {
    wait_until "every node reports $2 for $1" "$3" _all_equal "$1" "$2"
}

# Succeeds when every node reports the same value for COUNTER; prints it.
agreed_value() {
    local counter=$1 s v first=""
    for s in "${NODES[@]}"; do
        v=$(value_on "$s" "$counter" 2>/dev/null) || return 1
        [[ -z $first || $v == "$first" ]] || return 1
        first=$v
    done
    echo "$first"
}

start_stream() {
    local k=$1 counter=$2
    shift 2
    _stream "$k" "$counter" "$@" &
    _stream_pids+=("$!")
}

_stream() {
    local k=$1 counter=$2 sent=0 acked=0 by i=0
    shift 2
    local targets=("$@")
    while [[ ! -e $TEST_DIR/stop ]]; do
        by=$((RANDOM % 3 + 1))
        sent=$((sent + by))
        if "$GCTR" inc "$counter" --by "$by" \
            --http "$(http_of "${targets[i % ${#targets[@]}]}")" >/dev/null 2>&1; then
            acked=$((acked + by))
        elif [[ ${STREAM_STOP_ON_FAILURE:-0} == 1 ]] && ((acked > 0)); then
            # This request may or may not have been applied; sending no more keeps
            # "sent" tight.
            break
        else
            sleep 0.05
        fi
        i=$((i + 1))
    done
    echo "$sent $acked" >"$TEST_DIR/stream-$k.result"
}

stop_streams() {
    touch "$TEST_DIR/stop"
    local pid sent acked f
    for pid in "${_stream_pids[@]}"; do
        wait "$pid" || fail "a stream failed"
    done
    _stream_pids=()
    SENT=0 ACKED=0
    for f in "$TEST_DIR"/stream-*.result; do
        read -r sent acked <"$f"
        SENT=$((SENT + sent)) ACKED=$((ACKED + acked))
        rm "$f"
    done
    rm "$TEST_DIR/stop"
}

# Polls CMD (output captured) every 0.2 s until it succeeds; after SECS seconds fails,
# naming DESC and showing what the last try printed.
wait_until() {
    local desc=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds)) out
    while true; do
        out=$("$@" 2>&1) && return 0
        ((SECONDS < deadline)) ||
            fail "timed out after ${seconds}s waiting until $desc${out:+ (last try: $out)}"
        sleep 0.2
    done
}

now_ms() {
    local us=${EPOCHREALTIME//[.,]/}
    echo $((us / 1000))
}

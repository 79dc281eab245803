#!/usr/bin/env bash
# gctr in containers: builds the image (a static binary in an empty image) and drives the
# Compose cluster of docker-compose.yml (discovery and nodes node1..node5) through the
# moves a user tries first: partition a node off its network and heal it, kill it,
# restart it.
#
# Settings (environment): GCTR_IMAGE (the image tag, default gctr:latest),
# COMPOSE_PROJECT_NAME (Compose's own; default the repository directory's name), and
# what docker-compose.yml reads (GCTR_SUBNET, GCTR_PUBLISH_*). Works with `docker
# compose` or `docker-compose`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${GCTR_IMAGE:-gctr:latest}"
TARGET=x86_64-unknown-linux-gnu
# Seconds `up` and `restart` wait for a container to answer its health check.
READY_SECONDS=60

usage() {
    cat <<EOF
Usage: scripts/docker.sh COMMAND [ARGS]

  build             build the static binary and the image $IMAGE (FROM scratch)
  up                start discovery and the five nodes, wait until they answer
  down [-v]         stop and remove the containers and network (-v: the volumes too)
  ps                the containers and their health
  compose ARGS...   any docker compose command on docker-compose.yml
  logs [SERVICE]    the last lines of every log, or of one service's
  partition NODE    disconnect NODE (3 or node3) from the cluster network
  heal NODE         connect it again, with the address it had
  kill NODE         SIGKILL NODE's container (its volume stays)
  restart NODE      restart NODE's container (SIGTERM, or start it if it is
                    stopped) and wait until it answers
  help              this text

Node i serves HTTP on 127.0.0.1:801(i-1) (8010..8014): gctr inc --http 127.0.0.1:8010
EOF
}

die() {
    echo "docker.sh: $*" >&2
    exit 1
}

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$ROOT/docker-compose.yml" "$@"
    elif command -v docker-compose >/dev/null; then
        docker-compose -f "$ROOT/docker-compose.yml" "$@"
    else
        die "needs docker compose or docker-compose"
    fi
}

# Builds the binary for an empty image: the gnu target with a statically linked C
# library (glibc's resolver needs no NSS modules for files and DNS), then the image from
# a context holding only that binary and an empty data directory.
build() {
    echo "docker.sh: building the static binary (cargo --profile docker)"
    (cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --quiet --profile docker --target "$TARGET" --bin gctr)
    local target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $target_dir == /* ]] || target_dir=$ROOT/$target_dir
    local context
    context=$(mktemp -d "${TMPDIR:-/tmp}/gctr-image.XXXXXX")
    # shellcheck disable=SC2064 # the path is fixed now
    trap "rm -rf '$context'" EXIT
    cp "$target_dir/$TARGET/docker/gctr" "$context/gctr"
    mkdir "$context/data"
    # The legacy builder warns on stderr that it is deprecated: shown only on failure.
    docker build --quiet -f "$ROOT/docker/Dockerfile" -t "$IMAGE" "$context" \
        >"$context/build.log" 2>&1 || {
        cat "$context/build.log" >&2
        die "docker build failed"
    }
    echo "docker.sh: built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
}

# The service a NODE argument names: 3 or node3 is node3; discovery is discovery.
service() {
    case $1 in
    [1-9] | [1-9][0-9]) echo "node$1" ;;
    node[1-9] | node[1-9][0-9] | discovery) echo "$1" ;;
    *) die "no such node: $1 (give 1..5, node1..node5 or discovery)" ;;
    esac
}

container() {
    local id
    id=$(compose ps -q "$1" 2>/dev/null) || true
    [[ -n $id ]] || die "$1 has no container (is the cluster up?)"
    echo "$id"
}

# The cluster network of the container's Compose project.
network() {
    local project net
    project=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$1")
    net=$(docker network ls -q --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.network=gctr")
    [[ -n $net ]] || die "no gctr network for project $project"
    echo "$net"
}

# Waits until the container's node (or discovery) answers its health check.
wait_healthy() {
    local service=$1 id=$2 http=127.0.0.1:9010 i
    [[ $service == discovery ]] && http=127.0.0.1:8000
    for ((i = 0; i < READY_SECONDS * 10; i++)); do
        docker exec "$id" /gctr health --http "$http" --timeout 1s >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "$service did not answer /health within ${READY_SECONDS}s; see scripts/docker.sh logs $service"
}

up() {
    docker image inspect "$IMAGE" >/dev/null 2>&1 ||
        die "no image $IMAGE: run scripts/docker.sh build first"
    compose up -d
    local service
    for service in discovery node1 node2 node3 node4 node5; do
        wait_healthy "$service" "$(container "$service")"
    done
    echo "docker.sh: up; node i serves HTTP on 127.0.0.1:801(i-1): gctr get --all --http 127.0.0.1:8010"
}

# The address the node advertises (what its name resolved to when it started).
advertised_ip() {
    docker exec "$1" /gctr members --json |
        python3 -c 'import json, sys
m = json.load(sys.stdin)
me = next(x for x in m["members"] if x["name"] == m["self"])
print(me["gossip_addr"].rsplit(":", 1)[0])'
}

partition() {
    local service id
    service=$(service "$1")
    id=$(container "$service")
    docker network disconnect "$(network "$id")" "$id"
    echo "docker.sh: $service is cut off (scripts/docker.sh heal $service to undo)"
}

heal() {
    local service id ip
    service=$(service "$1")
    id=$(container "$service")
    ip=$(advertised_ip "$id") || die "cannot ask $service for its address"
    docker network connect --ip "$ip" --alias "$service" "$(network "$id")" "$id"
    echo "docker.sh: $service is back on the network at $ip"
}

kill_node() {
    local service
    service=$(service "$1")
    docker kill "$(container "$service")" >/dev/null
    echo "docker.sh: $service killed (its volume stays)"
}

restart() {
    local service id
    service=$(service "$1")
    id=$(container "$service")
    docker restart "$id" >/dev/null
    wait_healthy "$service" "$id"
    echo "docker.sh: $service restarted and answering"
}

main() {
    local cmd=${1:-help}
    (($#)) && shift
    case $cmd in
    build) build ;;
    up) up ;;
    down) compose down "$@" ;;
    ps) compose ps ;;
    compose) compose "$@" ;;
    logs) compose logs --tail 50 "$@" ;;
    partition) partition "${1:?partition NODE}" ;;
    heal) heal "${1:?heal NODE}" ;;
    kill) kill_node "${1:?kill NODE}" ;;
    restart) restart "${1:?restart NODE}" ;;
    help | -h | --help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"

#!/usr/bin/env bash
# The durable write path alone, beside Redis in the same run: increments/s over HTTP at
# 1, 16 and 64 keep-alive connections for a gctr node with --wal (fsync always) and
# Redis INCR with appendonly yes + appendfsync always (AOF on the same disk), in
# interleaved rounds; for each, the server's CPU time and context switches per
# operation (every thread, from /proc), and for gctr the operations per fsync.
# With GCTR_BASE, a second gctr binary (an older build) is measured in the same rounds,
# for before/after figures. scripts/bench.sh runs the whole benchmark; this is the part
# a change to the write path is judged by. Not run by CI.
#
# Usage: scripts/bench_durable.sh [--quick]
# Environment: GCTR_BIN   the gctr to measure [default: built here, release]
#              GCTR_BASE  another gctr to measure beside it [default: none]
#              BENCH_DIR  where data directories go [default: target/bench-durable]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=3 DURATION=4s WARMUP=1s
if [[ ${1:-} == --quick ]]; then
    ROUNDS=1 DURATION=2s WARMUP=500ms
elif [[ -n ${1:-} ]]; then
    echo "usage: scripts/bench_durable.sh [--quick]" >&2
    exit 2
fi
CONNECTIONS=(1 16 64)
command -v redis-server >/dev/null || {
    echo "bench_durable.sh: needs redis-server (apt-get install redis-server)" >&2
    exit 1
}

WORK=${BENCH_DIR:-$ROOT/target/bench-durable}
rm -rf "$WORK"
mkdir -p "$WORK"/{logs,out,data}
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${GCTR_BIN:-} ]]; then
    cargo build --release --quiet --bin gctr
    GCTR_BIN=$ROOT/target/release/gctr
fi
LOADGEN=$(cargo bench --no-run --quiet --bench loadgen --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*/loadgen-[^"]*"' | tail -1 | cut -d'"' -f4)
[[ -x $LOADGEN ]] || {
    echo "bench_durable.sh: cannot find the built loadgen bench" >&2
    exit 1
}

# start_gctr LABEL BINARY: a durable node; sets HTTP_ADDR and PID.
start_gctr() {
    "$2" node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name "$1" --log-level warn \
        --wal "$WORK/data/$1" >"$WORK/logs/$1.out" 2>"$WORK/logs/$1.log" &
    PID=$!
    PIDS+=("$PID")
    until grep -qs '^gctr node ' "$WORK/logs/$1.out"; do
        kill -0 "$PID" 2>/dev/null || {
            cat "$WORK/logs/$1.log" >&2
            exit 1
        }
        sleep 0.05
    done
    read -r _ _ _ _ _ _ HTTP_ADDR _ <"$WORK/logs/$1.out"
}

start_redis() {
    REDIS_PORT=$("$LOADGEN" free-port)
    mkdir -p "$WORK/data/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/data/redis" \
        --appendonly yes --appendfsync always --auto-aof-rewrite-percentage 0 --save "" \
        --daemonize no --protected-mode no >"$WORK/logs/redis.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
        kill -0 "$PID" 2>/dev/null || exit 1
        sleep 0.05
    done
}

# threads PID: "tid context-switches" per live thread, and a "cpu TICKS" line for the
# whole process (exited threads included).
threads() {
    # grep goes on past a thread that ended meanwhile; awk would stop.
    grep -H ctxt_switches /proc/"$1"/task/*/status 2>/dev/null |
        awk -F'[/:]' '{ s[$5] += $NF } END { for (t in s) print t, s[t] }'
    awk '{print "cpu", $14 + $15}' "/proc/$1/stat"
}

# measure LABEL PID LOADGEN-TARGET-ARGS...: one throughput run; appends cpu_us_per_op
# and ctxsw_per_op (each thread's switches during the run) to its RESULT line.
measure() {
    local label=$1 pid=$2
    shift 2
    threads "$pid" >"$WORK/out/$label.before"
    "$LOADGEN" throughput "$@" >"$WORK/out/$label.txt"
    threads "$pid" >"$WORK/out/$label.after"
    local acked
    acked=$(sed -n 's/^RESULT.* acked=\([0-9]*\).*/\1/p' "$WORK/out/$label.txt")
    awk -v acked="$acked" -v hz="$(getconf CLK_TCK)" '
        FNR == NR { before[$1] = $2; next }
        $1 == "cpu" { cpu = $2 - before["cpu"]; next }
        { sw += $2 - before[$1] }
        END { printf "COST cpu_us_per_op=%.1f ctxsw_per_op=%.2f ops=%d\n", cpu * 1e6 / hz / acked, sw / acked, acked }
    ' "$WORK/out/$label.before" "$WORK/out/$label.after" >>"$WORK/out/$label.txt"
    grep -h '^RESULT\|^COST' "$WORK/out/$label.txt" | tr '\n' ' ' | sed "s/^/$label: /"
    echo
}

# key LABEL KEY: KEY's value in out/LABEL.txt.
key() { grep -h '^RESULT\|^COST' "$WORK/out/$1.txt" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# median PREFIX KEY: the median of KEY over out/PREFIX-<round>.txt.
median() {
    local r
    for ((r = 1; r <= ROUNDS; r++)); do key "$1-$r" "$2"; done |
        sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

start_redis
REDIS_PID=$PID
BUILDS=(new)
start_gctr new "$GCTR_BIN"
declare -A NODE_PID NODE_HTTP
NODE_PID[new]=$PID NODE_HTTP[new]=$HTTP_ADDR
if [[ -n ${GCTR_BASE:-} ]]; then
    BUILDS=(base new)
    start_gctr base "$GCTR_BASE"
    NODE_PID[base]=$PID NODE_HTTP[base]=$HTTP_ADDR
fi

for c in "${CONNECTIONS[@]}"; do
    common=(--connections "$c" --warmup "$WARMUP" --duration "$DURATION")
    for ((r = 1; r <= ROUNDS; r++)); do
        measure "redis-$c-$r" "$REDIS_PID" --redis "127.0.0.1:$REDIS_PORT" "${common[@]}"
        for b in "${BUILDS[@]}"; do
            measure "$b-$c-$r" "${NODE_PID[$b]}" --gctr "${NODE_HTTP[$b]}" "${common[@]}"
        done
    done
done

echo
echo "| connections | server | increments/s | /Redis | p99 ms | CPU us/op | ctx switches/op |"
echo "|---|---|---|---|---|---|---|"
for c in "${CONNECTIONS[@]}"; do
    redis=$(median "redis-$c" ops_per_s)
    for s in redis "${BUILDS[@]}"; do
        ops=$(median "$s-$c" ops_per_s)
        name=$s
        [[ $s != redis ]] && name="gctr ($s)"
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$name" "$ops" \
            "$(awk -v a="$ops" -v b="$redis" 'BEGIN { printf "%.2f", a / b }')" \
            "$(median "$s-$c" p99_ms)" "$(median "$s-$c" cpu_us_per_op)" \
            "$(median "$s-$c" ctxsw_per_op)"
    done
done
for b in "${BUILDS[@]}"; do
    figures=()
    for k in ops batches; do
        figures+=("$("$LOADGEN" get --http "${NODE_HTTP[$b]}" --path /status --pointer "/requests/$k")")
    done
    fsyncs=$("$LOADGEN" get --http "${NODE_HTTP[$b]}" --path /status --pointer /storage/wal/fsyncs)
    echo "gctr ($b): ${figures[0]} ops in ${figures[1]} batches, $fsyncs fsyncs: $(awk -v o="${figures[0]}" -v f="$fsyncs" 'BEGIN { printf "%.1f", o / f }') ops per fsync"
done

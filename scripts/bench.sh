#!/usr/bin/env bash
# Benchmarks gctr on this machine, on loopback, each figure beside its reference:
#   1. convergence of a 5-node cluster, with and without eager push;
#   2. durable (and non-durable) increments/s at 1, 16 and 64 keep-alive connections,
#      against Redis INCR with appendonly yes + appendfsync always on the same disk,
#      with each server's CPU time and context switches per increment;
#      and at 16 connections with a dashboard left open on the node, against without;
#      then redis-benchmark INCR against Redis and a durable gctr node over RESP
#      (--redis), at 1, 16 and 64 clients, without and with -P 16;
#   3. WAL recovery speed (the wal_recovery bench; also at 1M counters, snapshot against
#      replay), memory per (counter, origin) entry (the state_memory bench), and a real
#      node restart;
#   4. idle gossip bytes/s and resident memory per node (5 nodes, 100 counters);
#   5. dissemination against cluster size: 5, 10, 25 and 50 node processes (convergence,
#      time to absorb 1000 increments, gossip frames and CPU per increment), with the
#      binary in GCTR_BASELINE_BIN as "before" when set, and --no-eager-push at 25 nodes;
#      the same figures from the simulator;
#   6. membership: crash detection and join time with 5 real nodes, idle membership
#      bytes with 10, detection and join in the simulator at 100 and 1000 nodes;
#   7. the container image (when a Docker engine answers): its size, and cold start
#      (docker run until /health answers) against the same binary started as a process.
#   8. gossip encryption (--keyring): bytes a sealed frame and datagram add, time to
#      seal and open, and convergence and increments/s of a keyed 5-node cluster
#      against a plain one, interleaved in the same run.
#   9. idempotency keys: durable increments/s on one node at 16 connections and
#      convergence of a 5-node cluster, each increment with a new Idempotency-Key,
#      against the same without keys, interleaved in the same run; heap bytes per live
#      key and per tombstone, and WAL bytes per key (the key_memory bench).
# Prints a table and writes BENCHMARKS.md (machine, disk, every command) and beside it
# BENCHMARKS.png: throughput against connections for gctr and Redis (sections 2 and 2b),
# frames per increment and convergence against cluster size (section 5). Not run by CI.
# Installs redis-server/redis-tools and gnuplot with apt-get when missing (needs root).
#
# Usage: scripts/bench.sh [--quick]      (--quick: fewer repetitions, shorter runs)
# Environment: BENCH_DIR  where data directories go [default: target/bench-run]; the
#                         node's WAL and Redis's AOF both go there, on the same disk.
#              GCTR_BIN   benchmark this gctr binary instead of building one.
#              GCTR_BASELINE_BIN  another gctr binary (an older build, say) to measure
#                         section 5 with as well, reported as "before".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
case "${1:-}" in
--quick) QUICK=1 ;;
"") ;;
*)
    echo "usage: scripts/bench.sh [--quick]" >&2
    exit 2
    ;;
esac
if ((QUICK)); then
    REPS=5 REPS_BIG=3 ROUNDS=1 DURATION=2s WARMUP=500ms IDLE_WINDOW=3s RESTART_FILL=3s
    MEMBER_REPS=4 SIM_SIZES=100
else
    REPS=20 REPS_BIG=10 ROUNDS=3 DURATION=4s WARMUP=1s IDLE_WINDOW=5s RESTART_FILL=20s
    MEMBER_REPS=10 SIM_SIZES=100,1000
fi
CONNECTIONS=(1 16 64)
# Concurrency of the runs with a dashboard left open, and the page's poll interval.
DASHBOARD_CONNECTIONS=16
DASHBOARD_POLL=500ms
SIZES=(5 10 25 50)

# ---------------------------------------------------------------- setup
need_packages=()
command -v redis-server >/dev/null || need_packages+=(redis-server)
command -v redis-benchmark >/dev/null || need_packages+=(redis-tools)
command -v findmnt >/dev/null || need_packages+=(util-linux)
command -v gnuplot >/dev/null || need_packages+=(gnuplot-nox)
if ((${#need_packages[@]})); then
    echo "bench.sh: installing ${need_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

WORK=${BENCH_DIR:-$ROOT/target/bench-run}
rm -rf "$WORK"
mkdir -p "$WORK"/{logs,out,data}
WORK=$(cd "$WORK" && pwd)
COMMANDS=$WORK/commands.txt
: >"$COMMANDS"

# Every process this script starts, so the trap can stop each one by its id; and every
# container and the image section 7 makes.
PIDS=()
CONTAINERS=()
BENCH_IMAGE=""
cleanup() {
    local pid id
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for id in "${CONTAINERS[@]}"; do
        docker rm -f -v "$id" >/dev/null 2>&1 || true
    done
    [[ -z $BENCH_IMAGE ]] || docker image rm "$BENCH_IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log_cmd() { printf '%s\n' "$*" >>"$COMMANDS"; }

# Runs a command, logging it; its output goes to the terminal and to out/LABEL.txt.
run() {
    local label=$1
    shift
    log_cmd "$*"
    "$@" 2>&1 | tee "$WORK/out/$label.txt"
}

# The value of KEY in the RESULT line of out/LABEL.txt.
result() {
    [[ -f $WORK/out/$1.txt ]] || return 0
    grep '^RESULT' "$WORK/out/$1.txt" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

if [[ -n ${GCTR_BIN:-} ]]; then
    GCTR=$(realpath "$GCTR_BIN")
else
    run build cargo build --release --quiet --bin gctr
    GCTR=$ROOT/target/release/gctr
fi
log_cmd "cargo bench --no-run --bench loadgen --bench wal_recovery --bench state_memory --bench key_memory"
bench_exe() {
    cargo bench --no-run --quiet --bench loadgen --bench wal_recovery --bench state_memory \
        --bench key_memory --message-format=json 2>/dev/null |
        grep -o "\"executable\":\"[^\"]*/$1-[^\"]*\"" | tail -1 | cut -d'"' -f4
}
LOADGEN=$(bench_exe loadgen)
WAL_BENCH=$(bench_exe wal_recovery)
STATE_BENCH=$(bench_exe state_memory)
KEY_BENCH=$(bench_exe key_memory)
[[ -x $LOADGEN && -x $WAL_BENCH && -x $STATE_BENCH && -x $KEY_BENCH ]] || {
    echo "bench.sh: cannot find the built loadgen / wal_recovery / state_memory / key_memory benches" >&2
    exit 1
}
lg() { run "$1" "$LOADGEN" "${@:2}"; }

# Read whole, not piped into `grep -q`: grep quitting early makes the pipe fail under
# pipefail, and the check with it.
NODE_HELP=$("$GCTR" node --help)
if [[ $NODE_HELP == *--wal* ]]; then
    HAS_WAL=1
else
    HAS_WAL=0
    echo "bench.sh: this gctr has no --wal; durable figures are skipped" >&2
fi

# ---------------------------------------------------------------- nodes
# start_node NAME [ARGS...]: starts a node on free loopback ports; sets NODE_PID,
# NODE_GOSSIP, NODE_HTTP and NODE_REDIS (empty without --redis) once it prints its
# start-up line.
start_node() {
    local name=$1
    shift
    local out=$WORK/logs/$name.out
    rm -f "$out" # a restarted node must not be read from its last run's line
    "$GCTR" node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name "$name" \
        --log-level warn "$@" >"$out" 2>"$WORK/logs/$name.log" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    local deadline=$((SECONDS + 20))
    until grep -qs '^gctr node ' "$out"; do
        if ((SECONDS > deadline)) || ! kill -0 "$NODE_PID" 2>/dev/null; then
            echo "bench.sh: node $name did not start; its log:" >&2
            cat "$WORK/logs/$name.log" >&2
            exit 1
        fi
        sleep 0.01
    done
    read -r _ _ _ _ NODE_GOSSIP _ NODE_HTTP _ NODE_REDIS <"$out"
}

# stop_pids PID...: SIGTERM (a clean stop), then wait; forgets them.
stop_pids() {
    local pid keep=() p
    for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        [[ " $* " == *" $p "* ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# start_cluster PREFIX N [ARGS...]: N nodes, each seeded with every earlier one (a full
# mesh); waits until the cluster has settled: every node reaches all the others and is
# ready for idempotency keys. Sets CLUSTER_PIDS, CLUSTER_HTTP (comma-separated HTTP
# addresses).
start_cluster() {
    local prefix=$1 n=$2 i seeds=() wal=()
    shift 2
    CLUSTER_PIDS=()
    CLUSTER_GOSSIP=()
    local http=()
    log_cmd "for i in 1..$n: $GCTR node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name $prefix-\$i --log-level warn$( ((HAS_WAL)) && printf ' --wal %s' "$WORK/data/$prefix-\$i") $* --seeds <gossip addresses of nodes 1..i-1>"
    for ((i = 1; i <= n; i++)); do
        wal=()
        ((HAS_WAL)) && wal=(--wal "$WORK/data/$prefix-$i")
        if ((${#seeds[@]})); then
            start_node "$prefix-$i" "${wal[@]}" "$@" --seeds "$(
                IFS=,
                echo "${seeds[*]}"
            )"
        else
            start_node "$prefix-$i" "${wal[@]}" "$@"
        fi
        CLUSTER_PIDS+=("$NODE_PID")
        CLUSTER_GOSSIP+=("$NODE_GOSSIP")
        seeds+=("$NODE_GOSSIP")
        http+=("$NODE_HTTP")
    done
    CLUSTER_HTTP=$(
        IFS=,
        echo "${http[*]}"
    )
    lg "mesh-$prefix" wait-peers --nodes "$CLUSTER_HTTP" --timeout 60s >/dev/null
}

# start_redis NAME [ARGS...]: a Redis with its AOF fsynced at every write (appendonly
# yes, appendfsync always) in data/NAME, on a free port, ARGS appended (a later option
# overrides an earlier one); sets REDIS_PID and REDIS_PORT. Automatic AOF rewrites are
# off, so the fork of one does not land in some runs only.
start_redis() {
    REDIS_PORT=$("$LOADGEN" free-port)
    mkdir -p "$WORK/data/$1"
    local cmd=(redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/data/$1"
        --appendonly yes --appendfsync always --auto-aof-rewrite-percentage 0 --save ""
        --daemonize no --protected-mode no "${@:2}")
    log_cmd "${cmd[*]}"
    "${cmd[@]}" >"$WORK/logs/$1.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
        kill -0 "$REDIS_PID" 2>/dev/null || {
            cat "$WORK/logs/$1.log" >&2
            exit 1
        }
        sleep 0.05
    done
    log_cmd "redis-cli -p $REDIS_PORT config get appendfsync   # $(redis-cli -p "$REDIS_PORT" config get appendfsync | tr '\n' ' ')"
}

# cpu_ticks PID: user + system CPU time of a process so far, all its threads (those
# that ended included), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# rb LABEL PORT PID CLIENTS PIPELINE REQUESTS: one `redis-benchmark -t incr` run against
# the server on PORT (process PID); out/LABEL.txt gets a RESULT line with ops_per_s and
# cpu_us_per_op (the server's CPU time over the run per INCR).
rb() {
    local label=$1 port=$2 pid=$3 c=$4 p=$5 n=$6 before after rps
    before=$(cpu_ticks "$pid")
    run "$label" redis-benchmark -h 127.0.0.1 -p "$port" -t incr -c "$c" -P "$p" -n "$n" --csv
    after=$(cpu_ticks "$pid")
    rps=$(sed -n 's/^"INCR","\([0-9.]*\)".*/\1/p' "$WORK/out/$label.txt")
    echo "RESULT ops_per_s=$rps cpu_us_per_op=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" \
        -v n="$n" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')" >>"$WORK/out/$label.txt"
}

# threads PID: "tid context-switches" per live thread, and a "cpu TICKS" line for the
# whole process (exited threads included).
threads() {
    # grep goes on past a thread that ended meanwhile; awk would stop.
    grep -H ctxt_switches /proc/"$1"/task/*/status 2>/dev/null |
        awk -F'[/:]' '{ s[$5] += $NF } END { for (t in s) print t, s[t] }'
    awk '{print "cpu", $14 + $15}' "/proc/$1/stat"
}

# costed LABEL PID ARGS...: `lg LABEL ARGS...`, then appends to its RESULT line the
# server PID's CPU time (cpu_us_per_op) and context switches (ctxsw_per_op, each
# thread's during the run) per acknowledged operation.
costed() {
    local label=$1 pid=$2 cost
    shift 2
    threads "$pid" >"$WORK/out/$label.before"
    lg "$label" "$@"
    threads "$pid" >"$WORK/out/$label.after"
    cost=$(awk -v acked="$(result "$label" acked)" -v hz="$CLK_TCK" '
        FNR == NR { before[$1] = $2; next }
        $1 == "cpu" { cpu = $2 - before["cpu"]; next }
        { sw += $2 - before[$1] }
        END { if (acked > 0) printf "cpu_us_per_op=%.1f ctxsw_per_op=%.2f", cpu * 1e6 / hz / acked, sw / acked }
    ' "$WORK/out/$label.before" "$WORK/out/$label.after")
    sed -i "/^RESULT/ s/\$/ $cost/" "$WORK/out/$label.txt"
}

# rss_kib PID: resident memory of a process, KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# median LABEL KEY: the median of KEY over the RESULT lines of out/LABEL-<round>.txt.
median() {
    local f values=()
    for f in "$WORK/out/$1"-*.txt; do
        [[ -f $f ]] || continue
        values+=("$(result "$(basename "$f" .txt)" "$2")")
    done
    ((${#values[@]})) || return 0
    printf '%s\n' "${values[@]}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

fmt() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else printf "%.0f", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
max2() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
# check VALUE OP LIMIT: "yes"/"no" for VALUE OP LIMIT (OP is < or >=).
check() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "" || v == "n/a") { print "n/a"; exit }
        ok = (op == "<") ? (v + 0 < l + 0) : (v + 0 >= l + 0); print ok ? "yes" : "NO" }'
}

STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 |"); }
NONDURABLE=()
REDIS_DURABLE=()

# ---------------------------------------------------------------- 1. convergence
echo "== 1. convergence: 5 nodes, 1000 increments, $REPS repetitions"
start_cluster conv-eager 5
lg conv-eager converge --nodes "$CLUSTER_HTTP" --increments 1000 --connections 8 \
    --reps "$REPS" --tag eager
stop_pids "${CLUSTER_PIDS[@]}"
start_cluster conv-lazy 5 --no-eager-push --gossip-interval 100ms
lg conv-lazy converge --nodes "$CLUSTER_HTTP" --increments 1000 --connections 8 \
    --reps "$REPS" --tag lazy
stop_pids "${CLUSTER_PIDS[@]}"
REF_CONV="Go reference: ~2.4 s for 1000 increments over 5 nodes"
REF_CONV_SIZE="reference gossip counters: about 1 s at a 100 ms interval"
row "Convergence, 5 nodes, eager push: p50 / p99 ($REPS reps)" \
    "$(result conv-eager p50_ms) / $(result conv-eager p99_ms) ms (first send to converged: p50 $(result conv-eager total_p50_ms) ms; $(result conv-eager frames_per_increment) gossip frames per increment)" \
    "$REF_CONV" "p99 < 20 ms" \
    "$(check "$(result conv-eager p99_ms)" '<' 20)"
row "Convergence, 5 nodes, no eager push, 100 ms interval: p50 / p99 ($REPS reps)" \
    "$(result conv-lazy p50_ms) / $(result conv-lazy p99_ms) ms (first send to converged: p50 $(result conv-lazy total_p50_ms) ms)" \
    "$REF_CONV" "p99 < 1 s" \
    "$(check "$(result conv-lazy p99_ms)" '<' 1000)"

# ---------------------------------------------------------------- 2. throughput
echo "== 2. write throughput at ${CONNECTIONS[*]} connections"
start_redis redis

if ((HAS_WAL)); then
    log_cmd "$GCTR node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name durable --log-level warn --wal $WORK/data/durable"
    start_node durable --wal "$WORK/data/durable"
    DURABLE_PID=$NODE_PID DURABLE_HTTP=$NODE_HTTP
fi
log_cmd "$GCTR node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name memory --log-level warn"
start_node memory
MEMORY_PID=$NODE_PID MEMORY_HTTP=$NODE_HTTP

# ROUNDS interleaved rounds of Redis, durable gctr and in-memory gctr at each
# concurrency, so drift in the machine's load hits all three alike; medians reported.
for c in "${CONNECTIONS[@]}"; do
    common=(--connections "$c" --warmup "$WARMUP" --duration "$DURATION")
    for ((r = 1; r <= ROUNDS; r++)); do
        costed "redis-$c-$r" "$REDIS_PID" throughput --redis "127.0.0.1:$REDIS_PORT" "${common[@]}"
        ((HAS_WAL)) && costed "durable-$c-$r" "$DURABLE_PID" throughput --gctr "$DURABLE_HTTP" "${common[@]}"
        if ((HAS_WAL && c == DASHBOARD_CONNECTIONS)); then
            lg "dashboard-$c-$r" throughput --gctr "$DURABLE_HTTP" "${common[@]}" \
                --dashboard-poll "$DASHBOARD_POLL"
        fi
        lg "memory-$c-$r" throughput --gctr "$MEMORY_HTTP" "${common[@]}"
    done
    # The HTTP layer alone (tiny_http and a worker, no event loop, no storage): the
    # ceiling any increment path through it can reach.
    lg "health-$c" throughput --http "$MEMORY_HTTP" --path /health "${common[@]}"
    n=$((c == 1 ? 10000 : 100000 * (QUICK ? 1 : 2)))
    run "redis-benchmark-$c" redis-benchmark -p "$REDIS_PORT" -t incr -c "$c" -n "$n" --csv
    RB=$(sed -n 's/^"INCR","\([0-9.]*\)".*/\1/p' "$WORK/out/redis-benchmark-$c.txt")
    REDIS=$(median "redis-$c" ops_per_s)
    REDIS_BEST=$(max2 "$REDIS" "$RB")
    DUR=$(median "durable-$c" ops_per_s)
    R=$(ratio "$DUR" "$REDIS_BEST")
    target="-"
    met="-"
    if ((c > 1)); then
        target="gctr/Redis >= 1.2"
        met=$(check "$R" '>=' 1.2)
    fi
    if ((HAS_WAL)); then
        dur_text="$(fmt "$DUR")/s ($(median "durable-$c" p99_ms) ms); gctr/Redis = **$R**"
    else
        dur_text="not measured: this gctr has no --wal"
    fi
    row "Durable increments/s, $c connection(s) (p99 latency)" "$dur_text" \
        "Redis INCR, AOF fsync always: $(fmt "$REDIS")/s ($(median "redis-$c" p99_ms) ms) with loadgen, $(fmt "$RB")/s with redis-benchmark" \
        "$target" "$met"
    if ((HAS_WAL)); then
        GCPU=$(median "durable-$c" cpu_us_per_op) RCPU=$(median "redis-$c" cpu_us_per_op)
        row "Server CPU and context switches per durable increment, $c connection(s)" \
            "gctr $GCPU us, $(median "durable-$c" ctxsw_per_op) switches; gctr/Redis CPU = **$(ratio "$GCPU" "$RCPU")**" \
            "Redis: $RCPU us, $(median "redis-$c" ctxsw_per_op) switches" \
            "gctr CPU <= Redis" "$(check "$(ratio "$GCPU" "$RCPU")" '<' 1.0001)"
    fi
    NONDURABLE[c]=$(median "memory-$c" ops_per_s)
    REDIS_DURABLE[c]=$REDIS_BEST
    ((HAS_WAL)) && echo "$c $DUR $REDIS_BEST" >>"$WORK/out/plot-http.dat"
done
if ((HAS_WAL)); then
    # A dashboard left open polls GET /dashboard.json every 500 ms; its runs are
    # interleaved with the plain durable runs above, same node, same rounds.
    c=$DASHBOARD_CONNECTIONS
    WITH=$(median "dashboard-$c" ops_per_s) WITHOUT=$(median "durable-$c" ops_per_s)
    WITH_P99=$(median "dashboard-$c" p99_ms) WITHOUT_P99=$(median "durable-$c" p99_ms)
    RATIO=$(ratio "$WITH" "$WITHOUT")
    row "Dashboard left open (GET /dashboard.json every $DASHBOARD_POLL), durable increments/s, $c connections (p99)" \
        "$(fmt "$WITH")/s ($WITH_P99 ms) with it, $(fmt "$WITHOUT")/s ($WITHOUT_P99 ms) without: with/without = **$RATIO**, p99 $(ratio "$WITH_P99" "$WITHOUT_P99")x" \
        "the same node without it, interleaved rounds" "with/without >= 0.95 (noise)" "$(check "$RATIO" '>=' 0.95)"
fi
for c in "${CONNECTIONS[@]}"; do
    row "Non-durable increments/s (no --wal), $c connection(s)" \
        "$(fmt "${NONDURABLE[c]}")/s" "Go reference: ~30k/s non-durable" "-" "-"
done
for c in "${CONNECTIONS[@]}"; do
    HEALTH=$(result "health-$c" ops_per_s)
    row "Diagnosis: GET /health/s, $c connection(s) (the HTTP layer alone: the most any increment through it reaches here)" \
        "$(fmt "$HEALTH")/s = **$(ratio "$HEALTH" "${REDIS_DURABLE[c]}")** x Redis's durable INCR/s" "-" "-" "-"
done
if ((HAS_WAL)); then
    # Group commit at work: operations per durable batch over all the durable runs.
    for key in /requests/ops /requests/batches /storage/wal/fsyncs; do
        "$LOADGEN" get --http "$DURABLE_HTTP" --path /status --pointer "$key"
    done >"$WORK/out/durable-batches.txt"
    read -r OPS BATCHES FSYNCS < <(paste -sd' ' "$WORK/out/durable-batches.txt")
    row "Group commit on the durable node, all runs above" \
        "$OPS ops in $BATCHES batches, $FSYNCS fsyncs: $(ratio "$OPS" "$FSYNCS") ops per fsync" "-" "-" "-"
fi
stop_pids "$REDIS_PID" "$MEMORY_PID"
((HAS_WAL)) && stop_pids "$DURABLE_PID"

# ---------------------------------------------------------------- 2b. RESP
# The same client against both: redis-benchmark INCR on a fresh Redis (AOF, fsync
# always) and on a fresh durable gctr node over --redis, interleaved round by round;
# and against a Redis that keeps nothing (no AOF, no snapshots): the most this client
# draws from any server on this machine, so a ratio past it cannot be measured here.
if ((HAS_WAL)) && [[ $NODE_HELP == *--redis* ]]; then
    echo "== 2b. redis-benchmark INCR, Redis against gctr over RESP, durable"
    start_redis redis-volatile --appendonly no
    VOLATILE_PID=$REDIS_PID VOLATILE_PORT=$REDIS_PORT
    start_redis redis-resp
    log_cmd "$GCTR node --addr 127.0.0.1:0 --http 127.0.0.1:0 --redis 127.0.0.1:0 --name resp --log-level warn --wal $WORK/data/resp --fsync always"
    start_node resp --redis 127.0.0.1:0 --wal "$WORK/data/resp" --fsync always
    RESP_PID=$NODE_PID RESP_HTTP=$NODE_HTTP RESP_PORT=${NODE_REDIS##*:}
    SENT=0
    for c in "${CONNECTIONS[@]}"; do
        for p in 1 16; do
            # About 2 s (4 s in a full run) of Redis at the rates this machine shows;
            # a multiple of 16, as redis-benchmark sends whole pipelines.
            n=$(((c == 1 ? 2000 : 20000) * (p == 1 ? 1 : 8) * (QUICK ? 1 : 2)))
            for ((r = 1; r <= ROUNDS; r++)); do
                rb "rb-redis-$c-$p-$r" "$REDIS_PORT" "$REDIS_PID" "$c" "$p" "$n"
                rb "rb-gctr-$c-$p-$r" "$RESP_PORT" "$RESP_PID" "$c" "$p" "$n"
                rb "rb-volatile-$c-$p-$r" "$VOLATILE_PORT" "$VOLATILE_PID" "$c" "$p" "$n"
                SENT=$((SENT + n))
            done
            REDIS=$(median "rb-redis-$c-$p" ops_per_s)
            GCTR_RPS=$(median "rb-gctr-$c-$p" ops_per_s)
            VOLATILE=$(median "rb-volatile-$c-$p" ops_per_s)
            R=$(ratio "$GCTR_RPS" "$REDIS")
            CEILING=$(ratio "$VOLATILE" "$REDIS")
            echo "$c $GCTR_RPS $REDIS" >>"$WORK/out/plot-resp-p$p.dat"
            target="-"
            met="-"
            if ((c > 1)); then
                target="gctr/Redis >= 1.5"
                met=$(check "$R" '>=' 1.5)
                [[ $met == NO && $(check "$CEILING" '>=' 1.5) == NO ]] &&
                    met="NO (past this client's most here)"
            fi
            row "redis-benchmark INCR/s, durable, $c client(s), -P $p (server CPU per INCR)" \
                "$(fmt "$GCTR_RPS")/s ($(median "rb-gctr-$c-$p" cpu_us_per_op) us); gctr/Redis = **$R**" \
                "Redis, AOF fsync always: $(fmt "$REDIS")/s ($(median "rb-redis-$c-$p" cpu_us_per_op) us); Redis keeping nothing: $(fmt "$VOLATILE")/s = **$CEILING** x durable (the most this client draws here)" \
                "$target" "$met"
        done
    done
    # Cross-check with another client: loadgen's one blocking thread per connection,
    # INCR over RESP, on the same two servers. redis-benchmark (one epoll thread)
    # has drawn far less from Redis than this client on this machine, so both are shown.
    for c in 16 64; do
        common=(--connections "$c" --warmup "$WARMUP" --duration "$DURATION")
        for ((r = 1; r <= ROUNDS; r++)); do
            lg "lg-resp-redis-$c-$r" throughput --redis "127.0.0.1:$REDIS_PORT" "${common[@]}"
            lg "lg-resp-gctr-$c-$r" throughput --redis "127.0.0.1:$RESP_PORT" "${common[@]}"
        done
        REDIS=$(median "lg-resp-redis-$c" ops_per_s)
        GCTR_RPS=$(median "lg-resp-gctr-$c" ops_per_s)
        row "Cross-check: loadgen INCR/s over RESP, durable, $c connections (p99 latency)" \
            "$(fmt "$GCTR_RPS")/s ($(median "lg-resp-gctr-$c" p99_ms) ms); gctr/Redis = **$(ratio "$GCTR_RPS" "$REDIS")**" \
            "Redis, AOF fsync always: $(fmt "$REDIS")/s ($(median "lg-resp-redis-$c" p99_ms) ms)" "-" "-"
    done
    # Every INCR redis-benchmark sent is counted, exactly once.
    COUNTED=$(redis-cli -p "$RESP_PORT" get counter:__rand_int__)
    for key in /requests/ops /requests/batches /storage/wal/fsyncs; do
        "$LOADGEN" get --http "$RESP_HTTP" --path /status --pointer "$key"
    done >"$WORK/out/rb-gctr-batches.txt"
    read -r OPS BATCHES FSYNCS < <(paste -sd' ' "$WORK/out/rb-gctr-batches.txt")
    row "redis-benchmark on gctr: counter after every run, against INCRs sent" \
        "$COUNTED of $SENT; $OPS ops in $BATCHES batches, $FSYNCS fsyncs ($(ratio "$OPS" "$FSYNCS") ops per fsync)" \
        "-" "equal" "$([[ $COUNTED == "$SENT" ]] && echo yes || echo NO)"
    stop_pids "$REDIS_PID" "$RESP_PID" "$VOLATILE_PID"
fi

# ---------------------------------------------------------------- 3. recovery
echo "== 3. recovery"
# CPU-bound and short: the machine's other load only slows it, so the best of 3 runs.
for r in 1 2 3; do
    run "wal-recovery-$r" "$WAL_BENCH" --bench
done
replay_rate() { sed -n 's/^replay without a snapshot: .* = \([0-9]*\) records\/s.*/\1/p' "$1"; }
BEST=$(for f in "$WORK"/out/wal-recovery-*.txt; do echo "$(replay_rate "$f") $f"; done | sort -gr | head -1)
REPLAY=${BEST%% *}
BEST_FILE=${BEST#* }
REPLAY_ALL=$(for f in "$WORK"/out/wal-recovery-*.txt; do echo "$(fmt "$(replay_rate "$f")")"; done | paste -sd' ')
REPLAY_LINE=$(sed -n 's/^replay without a snapshot: //p' "$BEST_FILE")
SNAP_WRITE=$(sed -n 's/^snapshot of the same state written in \([^;]*\);.*/\1/p' "$BEST_FILE")
SNAP_OPEN=$(sed -n 's/.*; open from it in \([^ ]*\) .*/\1/p' "$BEST_FILE")
row "WAL replay, 1,000,000 records, no snapshot (best of 3 runs: $REPLAY_ALL records/s)" "**$(fmt "$REPLAY") records/s** ($REPLAY_LINE)" "-" ">= 1M records/s" "$(check "$REPLAY" '>=' 1000000)"
row "WAL open from a snapshot covering the same 1,000,000 records" "$SNAP_OPEN (snapshot written in $SNAP_WRITE)" "-" "-" "-"
# A large state: 1,000,000 counters, one record each. The snapshot holds each entry once,
# so opening from it must beat replaying the records that made it.
run wal-recovery-1m env WAL_BENCH_COUNTERS=1000000 "$WAL_BENCH" --bench
# as_ms DURATION: a Rust Debug duration (1.35s, 980.2ms, 15µs) in milliseconds.
as_ms() { awk -v d="$1" 'BEGIN { v = d + 0; if (d ~ /ms$/) print v; else if (d ~ /s$/ && d !~ /[µn]s$/) print v * 1000; else print v / 1000 }'; }
REPLAY_1M=$(sed -n 's/^replay without a snapshot: [0-9]* records in \([^ ]*\) .*/\1/p' "$WORK/out/wal-recovery-1m.txt")
SNAP_1M=$(sed -n 's/.*; open from it in \([^ ]*\) .*/\1/p' "$WORK/out/wal-recovery-1m.txt")
row "1,000,000 counters: WAL open from a snapshot vs replay of the same 1,000,000 records" \
    "**$SNAP_1M** from the snapshot" "$REPLAY_1M replaying" "snapshot faster" \
    "$(check "$(ratio "$(as_ms "$SNAP_1M")" "$(as_ms "$REPLAY_1M")")" '<' 1)"
run state-memory "$STATE_BENCH" --bench
STATE_HEAP=$(sed -n 's/^heap bytes per entry *//p' "$WORK/out/state-memory.txt")
STATE_RSS=$(sed -n 's/^resident bytes per entry *//p' "$WORK/out/state-memory.txt")
row "Memory per (counter, origin) entry, 1,000,000 counters written by 3 origins (state_memory bench)" \
    "**$STATE_RSS B resident**, $STATE_HEAP B allocated" "Redis: 60 B per key (RSS)" "<= 100 B" \
    "$(check "$STATE_RSS" '<' 100.01)"
if ((HAS_WAL)); then
    # A real restart: fill a node's WAL (fsync never, to fill it fast: each increment
    # from one connection is one record), stop it cleanly, then time a start with the
    # default policy until /health answers; the node replays every record (no snapshot
    # is taken below 1,000,000 records).
    log_cmd "$GCTR node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name restart --log-level warn --wal $WORK/data/restart --fsync never"
    start_node restart --wal "$WORK/data/restart" --fsync never
    lg restart-fill throughput --gctr "$NODE_HTTP" --connections 1 --warmup 0s --duration "$RESTART_FILL"
    lg restart-records get --http "$NODE_HTTP" --path /status --pointer /storage/wal/last_seq
    stop_pids "$NODE_PID"
    log_cmd "$GCTR node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name restart --log-level warn --wal $WORK/data/restart   # timed until GET /health answers"
    SINCE=$(date +%s%N)
    start_node restart --wal "$WORK/data/restart"
    lg restart-health wait-health --http "$NODE_HTTP" --since-unix-ns "$SINCE"
    lg restart-replayed get --http "$NODE_HTTP" --path /status --pointer /storage/recovery/records_replayed
    stop_pids "$NODE_PID"
    RECORDS=$(tail -1 "$WORK/out/restart-replayed.txt")
    HEALTH_MS=$(result restart-health health_ms)
    row "Node restart replaying $RECORDS WAL records: process start until /health answers" \
        "$HEALTH_MS ms = $(awk -v n="$RECORDS" -v t="$HEALTH_MS" 'BEGIN { if (t > 0) printf "%.0f", n / t * 1000; else print "n/a" }') records/s, process start included" \
        "-" ">= 1M records/s" "$(check "$(awk -v n="$RECORDS" -v t="$HEALTH_MS" 'BEGIN { if (t > 0) print n / t * 1000 }')" '>=' 1000000)"
fi

# ---------------------------------------------------------------- 4. idle cost
echo "== 4. idle gossip and memory: 5 nodes, 100 counters"
start_cluster idle 5
lg idle idle --nodes "$CLUSTER_HTTP" --counters 100 --window "$IDLE_WINDOW"
RSS_LIST=()
for pid in "${CLUSTER_PIDS[@]}"; do RSS_LIST+=("$(rss_kib "$pid")"); done
RSS_MAX=$(printf '%s\n' "${RSS_LIST[@]}" | sort -n | tail -1)
RSS_MEAN=$(printf '%s\n' "${RSS_LIST[@]}" | awk '{s += $1} END {printf "%.0f", s / NR}')
stop_pids "${CLUSTER_PIDS[@]}"
row "Idle gossip bytes/s per node, out (5 nodes, 100 counters, frame bytes)" \
    "mean $(result idle out_mean_bps) B/s, max $(result idle out_max_bps) B/s" "-" "-" "-"
row "Resident memory per idle node (VmRSS)" \
    "mean $(awk -v k="$RSS_MEAN" 'BEGIN {printf "%.1f", k / 1024}') MiB, max $(awk -v k="$RSS_MAX" 'BEGIN {printf "%.1f", k / 1024}') MiB" \
    "-" "< 10 MiB" "$(check "$(awk -v k="$RSS_MAX" 'BEGIN {print k / 1024}')" '<' 10)"

# ---------------------------------------------------------------- 5. cluster size
echo "== 5. dissemination against cluster size: ${SIZES[*]}"
# size_run LABEL N [NODE ARGS...]: an N-node cluster of $GCTR, 1000 increments
# over 8 connections per node, repeated; out/LABEL.txt gets loadgen's RESULT line and
# out/LABEL-cpu.txt cpu_ms_per_increment (CPU of every node over the runs, per increment,
# per node).
size_run() {
    local label=$1 n=$2 reps before=0 after=0 pid
    shift 2
    reps=$((n <= 10 ? REPS : REPS_BIG))
    ((n >= 50)) && reps=$((REPS_BIG / 2 > 3 ? REPS_BIG / 2 : 3))
    start_cluster "$label" "$n" "$@"
    for pid in "${CLUSTER_PIDS[@]}"; do before=$((before + $(cpu_ticks "$pid"))); done
    lg "$label" converge --nodes "$CLUSTER_HTTP" --increments 1000 --connections 8 \
        --reps "$reps" --tag "$label"
    for pid in "${CLUSTER_PIDS[@]}"; do after=$((after + $(cpu_ticks "$pid"))); done
    stop_pids "${CLUSTER_PIDS[@]}"
    echo "RESULT reps=$reps cpu_ms_per_increment=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" \
        -v r="$reps" -v n="$n" 'BEGIN { printf "%.3f", t * 1000 / hz / (r * 1000) / n }')" \
        >"$WORK/out/$label-cpu.txt"
}
# size_text LABEL: the figures of one size_run.
size_text() {
    local r
    r="$(result "$1" p50_ms) / $(result "$1" p99_ms) ms; 1000 absorbed in $(result "$1" absorb_p50_ms) ms"
    r+="; $(result "$1" frames_per_increment) frames per increment ($(result "$1" push_per_increment) push)"
    echo "$r; CPU $(result "$1-cpu" cpu_ms_per_increment) ms per increment per node"
}
GCTR_CURRENT=$GCTR
for n in "${SIZES[@]}"; do
    size_run "size-$n" "$n"
    before_text="-"
    if [[ -n ${GCTR_BASELINE_BIN:-} ]]; then
        GCTR=$(realpath "$GCTR_BASELINE_BIN")
        size_run "size-before-$n" "$n"
        GCTR=$GCTR_CURRENT
        before_text="before ($GCTR_BASELINE_BIN): $(size_text "size-before-$n")"
    fi
    target="-" met="-"
    case $n in
    25)
        target="frames <= 5, p99 < 50 ms"
        met="$(check "$(result "size-$n" frames_per_increment)" '<' 5.001) $(check "$(result "size-$n" p99_ms)" '<' 50)"
        ;;
    50)
        target="frames <= 5, p99 < 100 ms, absorbed < 1 s"
        met="$(check "$(result "size-$n" frames_per_increment)" '<' 5.001) $(check "$(result "size-$n" p99_ms)" '<' 100) $(check "$(result "size-$n" absorb_p50_ms)" '<' 1000)"
        ;;
    esac
    row "Dissemination, $n nodes, 1000 increments: convergence after the last p50 / p99 ($(result "size-$n-cpu" reps) reps)" \
        "$(size_text "size-$n")" "$before_text" "$target" "$met"
    echo "$n $(result "size-$n" frames_per_increment) $(result "size-$n" p99_ms)" >>"$WORK/out/plot-size.dat"
done
size_run size-lazy-25 25 --no-eager-push
row "Dissemination, 25 nodes, --no-eager-push (anti-entropy alone, 100 ms): p50 / p99 ($(result size-lazy-25-cpu reps) reps)" \
    "$(size_text size-lazy-25)" "the floor of frames per increment" "-" "-"

log_cmd "GCTR_BENCH_SIZES=5,10,25,50 cargo test --release --test dissemination bench_dissemination_against_cluster_size -- --ignored --nocapture"
(cd "$ROOT" && GCTR_BENCH_SIZES=5,10,25,50 cargo test --release --quiet --test dissemination \
    bench_dissemination_against_cluster_size -- --ignored --nocapture) >"$WORK/out/dissemination-sim.txt" 2>&1 ||
    { cat "$WORK/out/dissemination-sim.txt"; exit 1; }
for n in "${SIZES[@]}"; do
    sim_field() { grep "^RESULT n=$n eager=$1 " "$WORK/out/dissemination-sim.txt" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
    row "Dissemination, simulated $n nodes, 1000 increments over 400 ms (0.1-0.5 ms links)" \
        "$(sim_field true frames_per_increment) frames per increment ($(sim_field true push_per_increment) push), converged $(sim_field true convergence_ms) ms after the last" \
        "no eager push: $(sim_field false frames_per_increment) frames per increment, $(sim_field false convergence_ms) ms" "-" "-"
    echo "$n $(sim_field true frames_per_increment) $(sim_field true convergence_ms)" >>"$WORK/out/plot-sim.dat"
done

# ---------------------------------------------------------------- 6. membership
echo "== 6. membership"
# nearest LIST P: the P-th percentile (0..100) of the numbers in LIST, by nearest rank.
nearest() {
    printf '%s\n' $1 | sort -n | awk -v p="$2" '{v[NR] = $1} END {
        if (NR == 0) { print "n/a"; exit }
        r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; print v[r] }'
}
start_cluster memb 5
DETECT=""
for ((r = 0; r < MEMBER_REPS; r++)); do
    v=$((r % 5))
    others=()
    for ((i = 0; i < 5; i++)); do
        ((i == v)) || others+=("$(echo "$CLUSTER_HTTP" | cut -d, -f$((i + 1)))")
    done
    kill -KILL "${CLUSTER_PIDS[$v]}"
    lg "detect-$r" wait-member --nodes "$(IFS=,; echo "${others[*]}")" \
        --member "memb-$((v + 1))" --state dead --timeout 30s >/dev/null
    DETECT+=" $(result "detect-$r" ms)"
    # The same name again on new ports: a new run, which replaces the dead entry.
    start_node "memb-$((v + 1))" --seeds "${CLUSTER_GOSSIP[$(((v + 1) % 5))]}"
    CLUSTER_PIDS[v]=$NODE_PID
    CLUSTER_GOSSIP[v]=$NODE_GOSSIP
    CLUSTER_HTTP=$(echo "$CLUSTER_HTTP" | awk -F, -v i=$((v + 1)) -v h="$NODE_HTTP" \
        'BEGIN {OFS = ","} {$i = h; print}')
    lg "rejoin-$r" wait-member --nodes "$CLUSTER_HTTP" --member "memb-$((v + 1))" \
        --state alive --timeout 30s >/dev/null
done
row "Crash detection, 5 real nodes: SIGKILL until every other member says dead, p50 / p99 ($MEMBER_REPS kills)" \
    "$(nearest "$DETECT" 50) / $(nearest "$DETECT" 99) ms" \
    "memberlist LAN defaults: about 6-10 s; chitchat: under 10 s" "<= 5000 ms" \
    "$(check "$(nearest "$DETECT" 99)" '<' 5001)"
JOIN=""
for ((r = 0; r < MEMBER_REPS; r++)); do
    start_node "joiner-$r" --seeds "${CLUSTER_GOSSIP[0]}"
    lg "join-$r" wait-member --nodes "$CLUSTER_HTTP,$NODE_HTTP" --member "joiner-$r" \
        --state alive --timeout 30s >/dev/null
    JOIN+=" $(result "join-$r" ms)"
    stop_pids "$NODE_PID"
done
stop_pids "${CLUSTER_PIDS[@]}"
row "Join time, 5 real nodes + 1: start-up line until every member lists it alive, p50 / p99 ($MEMBER_REPS joins)" \
    "$(nearest "$JOIN" 50) / $(nearest "$JOIN" 99) ms" "Serf: 99.99 % spread in about 2 s at 100 nodes" "-" "-"

start_cluster idle10 10
lg idle10 idle --nodes "$CLUSTER_HTTP" --counters 10 --window "$IDLE_WINDOW"
stop_pids "${CLUSTER_PIDS[@]}"
row "Membership bytes/s per node, out, 10 idle nodes (probes, acks, digest checks)" \
    "$(result idle10 member_out_mean_bps) B/s (all gossip: $(result idle10 out_mean_bps) B/s)" \
    "chitchat: under 15 KB/s per node at 10 nodes" "< 15000 B/s" \
    "$(check "$(result idle10 member_out_mean_bps)" '<' 15000)"

log_cmd "GCTR_BENCH_SIZES=$SIM_SIZES cargo test --release --test membership_sim bench_detection_and_join_at_scale -- --ignored --nocapture"
(cd "$ROOT" && GCTR_BENCH_SIZES=$SIM_SIZES cargo test --release --quiet --test membership_sim \
    bench_detection_and_join_at_scale -- --ignored --nocapture) >"$WORK/out/membership-sim.txt" 2>&1 ||
    { cat "$WORK/out/membership-sim.txt"; exit 1; }
for n in ${SIM_SIZES//,/ }; do
    line=$(grep "^RESULT n=$n " "$WORK/out/membership-sim.txt")
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    row "Crash detection, simulated $n nodes: p50 / p99 / max over every member's view" \
        "$(field detect_p50_ms) / $(field detect_p99_ms) / $(field detect_max_ms) ms" \
        "memberlist: about 6-10 s" "-" "-"
    row "Join time, simulated $n nodes: until every member lists the joiner alive" \
        "$(field join_ms) ms" "Serf: about 2 s at 100 nodes" "-" "-"
done

# ---------------------------------------------------------------- 7. container
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "== 7. container image"
    BENCH_IMAGE=gctr-bench:$$
    GCTR_IMAGE=$BENCH_IMAGE run docker-build scripts/docker.sh build
    IMAGE_BYTES=$(docker image inspect -f '{{.Size}}' "$BENCH_IMAGE")
    row "Container image (FROM scratch, static binary)" \
        "$(awk -v b="$IMAGE_BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }') ($IMAGE_BYTES bytes)" \
        "-" "< 10 MB" "$(check "$IMAGE_BYTES" '<' 10000000)"
    # Cold start: a new container (new volume, empty WAL) from `docker run` until /health
    # answers on its published port; against the same binary started as a process here,
    # with a new WAL directory, until its /health answers.
    for ((r = 1; r <= REPS_BIG; r++)); do
        port=$("$LOADGEN" free-port)
        log_cmd "docker run -d -p 127.0.0.1:$port:9010 -e GCTR_ADVERTISE=127.0.0.1 --mount type=volume,dst=/data $BENCH_IMAGE   # timed until GET /health answers"
        SINCE=$(date +%s%N)
        CONTAINERS+=("$(docker run -d -p "127.0.0.1:$port:9010" -e GCTR_ADVERTISE=127.0.0.1 \
            --mount type=volume,dst=/data "$BENCH_IMAGE")")
        lg "cold-container-$r" wait-health --http "127.0.0.1:$port" --since-unix-ns "$SINCE"
        docker rm -f -v "${CONTAINERS[-1]}" >/dev/null
        SINCE=$(date +%s%N)
        start_node "cold-process-$r" --wal "$WORK/data/cold-$r"
        lg "cold-process-$r" wait-health --http "$NODE_HTTP" --since-unix-ns "$SINCE"
        stop_pids "$NODE_PID"
    done
    COLD_CONTAINER=$(median cold-container health_ms)
    COLD_PROCESS=$(median cold-process health_ms)
    row "Cold start, median of $REPS_BIG: docker run (new container and volume) until /health answers" \
        "$(fmt "$COLD_CONTAINER") ms ($(ratio "$COLD_CONTAINER" "$COLD_PROCESS") x the process)" \
        "the same binary as a process, new WAL, until /health: $(fmt "$COLD_PROCESS") ms" "-" "-"
else
    echo "== 7. container image: skipped, no Docker engine answers"
fi
# ---------------------------------------------------------------- 8. gossip encryption
echo "== 8. gossip encryption: keyed against plain, 5 nodes each"
log_cmd "$GCTR keygen > $WORK/keyring"
"$GCTR" keygen >"$WORK/keyring"
lg seal seal --reps "$REPS"
row "Gossip encryption, bytes added: per TCP frame / per UDP datagram / per connection (handshake)" \
    "$(result seal tcp_overhead_bytes) B / $(result seal udp_overhead_bytes) B / $(result seal handshake_bytes) B" \
    "memberlist and Serf (AES-GCM): 33 B per TCP message, 29 B per UDP packet" "<= 29 B a frame" \
    "$(check "$(max2 "$(result seal tcp_overhead_bytes)" "$(result seal udp_overhead_bytes)")" '<' 30)"
row "Gossip encryption, seal + open: $(result seal small_frame_bytes)-byte push / $(result seal large_frame_bytes)-byte frame / probe datagram" \
    "$(result seal small_ns) ns / $(result seal large_ns) ns ($(result seal large_mib_s) MiB/s) / $(result seal udp_ns) ns" \
    "-" "-" "-"
start_cluster keyed 5 --keyring "$WORK/keyring"
KEYED_HTTP=$CLUSTER_HTTP KEYED_PIDS=("${CLUSTER_PIDS[@]}")
start_cluster plain 5
PLAIN_HTTP=$CLUSTER_HTTP PLAIN_PIDS=("${CLUSTER_PIDS[@]}")
lg enc-conv-plain converge --nodes "$PLAIN_HTTP" --increments 1000 --connections 8 \
    --reps "$REPS" --tag plain
lg enc-conv-keyed converge --nodes "$KEYED_HTTP" --increments 1000 --connections 8 \
    --reps "$REPS" --tag keyed
for ((r = 1; r <= ROUNDS; r++)); do
    common=(--connections 16 --warmup "$WARMUP" --duration "$DURATION")
    lg "enc-tput-plain-$r" throughput --gctr "${PLAIN_HTTP%%,*}" "${common[@]}"
    lg "enc-tput-keyed-$r" throughput --gctr "${KEYED_HTTP%%,*}" "${common[@]}"
done
stop_pids "${KEYED_PIDS[@]}" "${PLAIN_PIDS[@]}"
row "Gossip encryption, convergence of 5 nodes after 1000 increments: keyed p50 / p99 ($REPS reps)" \
    "$(result enc-conv-keyed p50_ms) / $(result enc-conv-keyed p99_ms) ms; keyed/plain p99 = **$(ratio "$(result enc-conv-keyed p99_ms)" "$(result enc-conv-plain p99_ms)")**" \
    "plain, same run: $(result enc-conv-plain p50_ms) / $(result enc-conv-plain p99_ms) ms" "-" "-"
ENC_KEYED=$(median enc-tput-keyed ops_per_s)
ENC_PLAIN=$(median enc-tput-plain ops_per_s)
row "Gossip encryption, in-memory increments/s on one node of 5, 16 connections (each pushed to the others)" \
    "keyed $(fmt "$ENC_KEYED")/s; keyed/plain = **$(ratio "$ENC_KEYED" "$ENC_PLAIN")**" \
    "plain, same run: $(fmt "$ENC_PLAIN")/s" "keyed/plain >= 0.9" \
    "$(check "$(ratio "$ENC_KEYED" "$ENC_PLAIN")" '>=' 0.9)"

# ---------------------------------------------------------------- 9. idempotency keys
echo "== 9. idempotency keys: keyed against unkeyed increments, 1 node and 5 nodes"
# wait_keys_ready HTTP,HTTP,...: until every node takes keyed writes (a node that starts
# with no state of its own refuses them until a peer has answered its first pull).
wait_keys_ready() {
    local http deadline=$((SECONDS + 30))
    for http in ${1//,/ }; do
        until [[ $("$LOADGEN" get --http "$http" --path /status --pointer /keys/ready) == true ]]; do
            if ((SECONDS > deadline)); then
                echo "bench.sh: $http still refuses keyed writes after 30 s" >&2
                exit 1
            fi
            sleep 0.05
        done
    done
}
run key-memory "$KEY_BENCH" --bench
row "Idempotency keys, heap bytes per retained key: live / tombstone (key_memory bench, $(sed -n 's/.*counters: //p' "$WORK/out/key-memory.txt") keys)" \
    "16-byte keys: $(result key-memory live_heap_16) / $(result key-memory tombstone_heap_16) B; 36-byte (UUID): **$(result key-memory live_heap_36) / $(result key-memory tombstone_heap_36) B**" \
    "-" "-" "-"
row "Idempotency keys, WAL bytes per key (acceptances logged 64 to a batch)" \
    "16-byte keys: $(result key-memory wal_16) B; 36-byte (UUID): **$(result key-memory wal_36) B**" \
    "-" "-" "-"
if ((HAS_WAL)); then
    log_cmd "$GCTR node --addr 127.0.0.1:0 --http 127.0.0.1:0 --name keys --log-level warn --wal $WORK/data/keys"
    start_node keys --wal "$WORK/data/keys"
    KEYS_PID=$NODE_PID KEYS_HTTP=$NODE_HTTP
    for ((r = 1; r <= ROUNDS; r++)); do
        common=(--connections 16 --warmup "$WARMUP" --duration "$DURATION")
        costed "key-tput-plain-$r" "$KEYS_PID" throughput --gctr "$KEYS_HTTP" "${common[@]}"
        costed "key-tput-keyed-$r" "$KEYS_PID" throughput --gctr "$KEYS_HTTP" "${common[@]}" --keyed
    done
    "$LOADGEN" get --http "$KEYS_HTTP" --path /status --pointer /keys >"$WORK/out/key-status.txt"
    stop_pids "$KEYS_PID"
    KEYED=$(median key-tput-keyed ops_per_s) PLAIN=$(median key-tput-plain ops_per_s)
    row "Idempotency keys, durable increments/s on one node, 16 connections, each with a new key (p99; server CPU per increment)" \
        "keyed $(fmt "$KEYED")/s ($(median key-tput-keyed p99_ms) ms; $(median key-tput-keyed cpu_us_per_op) us); keyed/unkeyed = **$(ratio "$KEYED" "$PLAIN")**" \
        "unkeyed, same node, interleaved rounds: $(fmt "$PLAIN")/s ($(median key-tput-plain p99_ms) ms; $(median key-tput-plain cpu_us_per_op) us)" "-" "-"
fi
start_cluster keys 5
wait_keys_ready "$CLUSTER_HTTP"
for ((r = 1; r <= ROUNDS; r++)); do
    lg "key-conv-plain-$r" converge --nodes "$CLUSTER_HTTP" --increments 1000 --connections 8 \
        --reps "$REPS" --tag "plain-$r"
    lg "key-conv-keyed-$r" converge --nodes "$CLUSTER_HTTP" --increments 1000 --connections 8 \
        --reps "$REPS" --tag "keyed-$r" --keyed
done
stop_pids "${CLUSTER_PIDS[@]}"
KEYED_P99=$(median key-conv-keyed p99_ms) PLAIN_P99=$(median key-conv-plain p99_ms)
row "Idempotency keys, convergence of 5 nodes after 1000 increments, each with a new key: p50 / p99 (median of $ROUNDS runs of $REPS reps)" \
    "$(median key-conv-keyed p50_ms) / $KEYED_P99 ms, $(median key-conv-keyed frames_per_increment) gossip frames per increment; keyed/unkeyed p99 = **$(ratio "$KEYED_P99" "$PLAIN_P99")**" \
    "unkeyed, same cluster, interleaved runs: $(median key-conv-plain p50_ms) / $PLAIN_P99 ms, $(median key-conv-plain frames_per_increment) frames per increment" "-" "-"

# ---------------------------------------------------------------- report
ELAPSED=$((SECONDS - T0))
TABLE=$(
    echo "| Measure | gctr | Reference (same machine, same run, unless stated) | Target | Met |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
)
echo
echo "$TABLE"

# ---------------------------------------------------------------- plot
# BENCHMARKS.png: four panels from the plot-*.dat files the sections above wrote.
plot() {
    local out=$WORK/out
    gnuplot <<EOF
set terminal pngcairo size 1400,1000 font ",11"
set output "$ROOT/BENCHMARKS.png"
set multiplot layout 2,2 title "gctr and Redis on this machine, scripts/bench.sh, $(date -u +%Y-%m-%d) ($(nproc) CPUs)"
set grid
set key top left
set logscale x 2
set xlabel "connections"
set ylabel "durable increments/s"
set title "HTTP (loadgen, closed loop) against Redis INCR, AOF fsync always"
plot "$out/plot-http.dat" using 1:2 with linespoints title "gctr over HTTP", \\
     "" using 1:3 with linespoints title "Redis"
set xlabel "clients"
set ylabel "INCR/s"
set title "redis-benchmark -t incr, both durable (fsync always)"
set logscale y
plot "$out/plot-resp-p1.dat" using 1:2 with linespoints title "gctr, -P 1", \\
     "" using 1:3 with linespoints title "Redis, -P 1", \\
     "$out/plot-resp-p16.dat" using 1:2 with linespoints title "gctr, -P 16", \\
     "" using 1:3 with linespoints title "Redis, -P 16"
unset logscale
set xlabel "nodes"
set ylabel "gossip frames per increment"
set title "Dissemination of 1000 increments: frames per cluster-wide increment"
plot "$out/plot-size.dat" using 1:2 with linespoints title "node processes", \\
     "$out/plot-sim.dat" using 1:2 with linespoints title "simulator", \\
     5 with lines dashtype 2 title "target"
set ylabel "ms"
set logscale y
set title "Convergence after the last of 1000 increments"
plot "$out/plot-size.dat" using 1:3 with linespoints title "node processes, p99", \\
     "$out/plot-sim.dat" using 1:3 with linespoints title "simulator"
unset multiplot
EOF
}
PLOT="not drawn"
if plot >"$WORK/out/plot.txt" 2>&1; then
    PLOT="![Throughput against connections, frames per increment and convergence against cluster size](BENCHMARKS.png)"
else
    echo "bench.sh: the plot failed:"
    cat "$WORK/out/plot.txt"
fi

DISK_DF=$(df -h "$WORK" | tail -1)
DISK_MNT=$(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$WORK")
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
    echo "# gctr benchmarks"
    echo
    echo "Written by \`scripts/bench.sh$( ((QUICK)) && echo ' --quick')\` on $STARTED, in ${ELAPSED} s."
    echo
    echo "- Machine: $(nproc) CPUs ($CPU), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)."
    echo "- Load average when the run started: $LOAD_BEFORE (the machine may be shared: figures are only comparable within one run)."
    echo "- Data directory (gctr WALs and Redis's AOF, same disk): \`$WORK\`"
    echo "  - df: \`$DISK_DF\`"
    echo "  - findmnt: \`$DISK_MNT\`"
    echo "- gctr: \`$GCTR\` ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)); $(redis-server --version | cut -d' ' -f1-3)."
    echo
    echo "$TABLE"
    echo
    echo "$PLOT"
    echo
    echo '## What limits durable throughput (profiled 2026-12-04 on this 2-core machine)'
    echo
    echo 'Every figure here shares 2 cores with its client. Two rows bound what can be measured:'
    echo 'the "GET /health" rows are tiny_http alone (no event loop, no WAL), and the "Redis'
    echo 'keeping nothing" figures are the most redis-benchmark draws from any server.'
    echo
    echo '- HTTP, 64 connections: tiny_http answering `GET /health` and nothing else reached'
    echo '  0.97 times durable Redis on 2026-12-04 (1.1-1.3 in earlier runs), so no increment'
    echo '  through it reaches the 1.2 target here. It serves each connection from a thread of'
    echo '  its own, so a request costs at least two context switches (Redis: 0.12 per INCR).'
    echo '- HTTP and RESP, 16 connections without pipelining: latency, not CPU (tiny_http alone'
    echo '  3.1 times durable Redis, Redis keeping nothing 3.3 times). One batch is on the disk'
    echo '  at a time (fdatasync p50 160 us, p90 240 us under `strace -T`), and 16 closed-loop'
    echo '  clients settle into two cohorts: those answered by one fsync come back while the'
    echo '  next is on the disk, and wait for the one after, about 7 operations per fsync. Redis'
    echo '  (one fsync per event-loop turn) does the same. Tried on 2026-12-03: holding the next'
    echo '  batch for the clients just answered (up to one fsync): neutral at 16 clients, 30 %'
    echo '  worse at 64; and two batches in flight (the WAL thread writing the next while one'
    echo '  syncs): no gain, the fsyncs of one file do not overlap.'
    echo '- RESP, 64 clients without pipelining: redis-benchmark draws at most 1.42 times durable'
    echo '  Redis from a Redis keeping nothing (2026-12-04), so 1.5 cannot be measured here.'
    echo '  Per INCR, gctr spent 7.2 us in its RESP loop, 3.4 us in the event loop and 2.6 us'
    echo '  in the WAL thread (per-thread /proc figures), Redis 8.3 us in all; a quarter of'
    echo '  gctr'"'"'s samples are in the scheduler (`perf record`: finish_task_switch), 0.6'
    echo '  context switches per INCR, as each batch goes RESP loop -> event loop -> WAL thread'
    echo '  -> event loop -> RESP loop.'
    echo '- RESP, 64 clients with `-P 16`: CPU. gctr used 1.02 cores (RESP loop 0.56, event'
    echo '  loop 0.32, WAL thread 0.14) at about 1.6 us per INCR, as Redis does; the client'
    echo '  took the other core. 1.5 times Redis needs about 1.1 us per INCR here.'
    echo
    echo 'Candidates left: the event loop polling the RESP sockets itself (two hand-offs per'
    echo 'batch fewer), an epoll front for HTTP increments (a change to the fixed tiny_http'
    echo 'choice), and writes that sync without a journal commit so that two can overlap'
    echo '(O_DSYNC into preallocated segments). The ratios move from run to run on a shared'
    echo 'machine (load averages from 1 to several hundred were seen during runs): compare'
    echo 'figures within one run only.' 
    echo
    echo "## How each figure is measured"
    echo
    echo "- Convergence: \`loadgen converge\` sends 1000 increments of a fresh counter, each to a"
    echo "  random node, over 8 keep-alive connections per node; pollers then read every node's"
    echo "  counter in a tight loop. The figure is the time from the last acknowledgement until"
    echo "  the last node is first seen with the final value (a node over it fails the run);"
    echo "  \"first send to converged\" also counts the writing, as the reference figure does."
    echo "  p99 is by nearest rank: with 20 repetitions it is the slowest one. Each new"
    echo "  cluster first settles (\`loadgen wait-peers\`: every node reaches all the others"
    echo "  and is ready for idempotency keys, about 9 s at 50 nodes); a first"
    echo "  repetition, not counted, warms it up (HTTP connection threads and"
    echo "  gossip links start on first use; the CPU figures include it). Clusters are"
    echo "  real \`gctr node\` processes, each seeded with every earlier one$( ((HAS_WAL)) && echo ', each with its own --wal')."
    echo "- Dissemination: the same runs per cluster size, also reporting the time to absorb the"
    echo "  1000 increments (first sent to last acknowledged, p50), the gossip frames every node"
    echo "  sent (\`GET /status\`, membership frames left out) from just before the first increment"
    echo "  until just after convergence, per increment, and every node's CPU time (/proc/PID/stat)"
    echo "  over the runs per increment per node. \"before\" is the same with GCTR_BASELINE_BIN."
    echo "  The simulated rows come from \`tests/dissemination.rs\`'s benchmark test (virtual time)."
    echo "- Throughput: \`loadgen throughput\`, closed loop: each connection sends its next"
    echo "  request when the last is answered; operations inside the ${DURATION} window after a"
    echo "  ${WARMUP} warm-up are counted. gctr's counter must then read exactly the number of"
    echo "  acknowledged increments. Redis runs the same loop over RESP (\`INCR\`), and"
    echo "  redis-benchmark checks it; gctr/Redis divides by the higher of the two."
    echo "- Dashboard left open: the same durable throughput runs with \`--dashboard-poll $DASHBOARD_POLL\`,"
    echo "  one more connection polling \`GET /dashboard.json\` at the dashboard page's rate for its"
    echo "  own node, interleaved round by round with the runs without it."
    echo "- redis-benchmark: \`redis-benchmark -t incr -c C -P P -n N --csv\` against a fresh Redis"
    echo "  (AOF, fsync always, automatic rewrites off) and a fresh gctr node with \`--wal\` and"
    echo "  \`--fsync always\` serving \`--redis\`, alternating, $ROUNDS round(s) each, medians;"
    echo "  server CPU per INCR is the server process's user + system time over the run"
    echo "  (/proc/PID/stat) divided by N. gctr's counter must end equal to every INCR sent."
    echo "  The same runs against a Redis that keeps nothing (\`--appendonly no\`, no snapshots)"
    echo "  show the most redis-benchmark draws from any server on this machine: where that is"
    echo "  under 1.5 times the durable Redis, a ratio of 1.5 cannot be measured here."
    echo "- Recovery: \`cargo bench --bench wal_recovery\`, best of 3 (files in the page cache: the CPU cost of replay)."
    echo "- Idle gossip: the gossip frame bytes each node counts in \`GET /status\`, over ${IDLE_WINDOW}, after"
    echo "  100 counters converged on 5 nodes. Memory: VmRSS from /proc/PID/status."
    echo "- Membership: \`loadgen wait-member\` polls every other node's \`GET /members\` every 5 ms"
    echo "  from right after the SIGKILL (detection) or the joiner's start-up line (join);"
    echo "  membership bytes are the \`member\` frames each node counts (UDP probes included)."
    echo "  The simulated rows come from \`tests/membership_sim.rs\`'s benchmark test (virtual time)."
    echo "- Container: the image \`scripts/docker.sh build\` makes; its size as \`docker image"
    echo "  inspect\` reports it. Cold start: \`loadgen wait-health\` polls the published port"
    echo "  from just before \`docker run -d\` (a new container with a new volume) until"
    echo "  \`/health\` answers, interleaved with the same binary started as a process here."
    echo "- Idempotency keys: the throughput and convergence runs above with \`--keyed\`, every"
    echo "  increment carrying an \`Idempotency-Key\` never used before (the counter's name, the"
    echo "  connection and a sequence number), so each is a new acceptance, never a retry;"
    echo "  alternated round by round with the same runs without keys, on the same node (with"
    echo "  \`--wal\`) and the same 5-node cluster, $ROUNDS round(s) each, medians. The keys stay"
    echo "  held (as tombstones once folded) for the node's 24 h window, so later rounds run on"
    echo "  a node holding the earlier rounds' keys. Bytes per key: \`cargo bench --bench"
    echo "  key_memory\` accepts 1,000,000 keys on one replica, 64 to a local batch over 64"
    echo "  counters that exist beforehand, and counts the heap the allocator hands out while"
    echo "  they are live and after the node folded them all (tombstones); WAL bytes are each"
    echo "  batch's delta as the WAL logs it (codec encoding, record type byte, 16-byte frame"
    echo "  header) over the keys. Folding logs one totals entry per counter and batch, next to"
    echo "  nothing per key."
    echo
    echo "## Commands run"
    echo
    echo '```'
    cat "$COMMANDS"
    echo '```'
    echo
    echo "<details><summary>Raw output</summary>"
    echo
    echo '```'
    for pattern in conv-eager conv-lazy \
        redis-1-\* durable-1-\* memory-1-\* health-1 redis-benchmark-1 \
        redis-16-\* durable-16-\* dashboard-16-\* memory-16-\* health-16 redis-benchmark-16 \
        redis-64-\* durable-64-\* memory-64-\* health-64 redis-benchmark-64 \
        durable-batches rb-redis-\* rb-gctr-\* lg-resp-\* wal-recovery-\* restart-fill restart-records restart-health \
        restart-replayed idle size-\* dissemination-sim detect-\* join-\* idle10 \
        membership-sim docker-build cold-container-\* cold-process-\* \
        seal enc-\* key-memory key-tput-\* key-status key-conv-\*; do
        for f in "$WORK"/out/$pattern.txt; do
            [[ -f $f ]] || continue
            echo "### $(basename "$f" .txt)"
            grep -v '^$' "$f"
        done
    done
    echo '```'
    echo
    echo "</details>"
} >"$ROOT/BENCHMARKS.md"
echo
echo "bench.sh: wrote BENCHMARKS.md (${ELAPSED} s)"

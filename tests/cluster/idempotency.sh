#!/usr/bin/env bash
# Exactly-once increments (idempotency keys) with real processes, a real crash and a real
# network partition. Four nodes, each in its own network namespace on one hub bridge (as in
# partition.sh), each with its WAL, gossip every 50 ms. Client streams issue logical
# operations, each an increment or decrement by a random amount under a key of its own,
# sent with `gctr inc|dec --id KEY` to a random node; an attempt that fails or takes too
# long is retried with the same key and amount on another random node until one node
# acknowledges it (an operation never acknowledged fails the test: whether it counted is
# not provable). Some first attempts go to two nodes at once. The streams also send a
# random share of already acknowledged keys again, to other nodes (two at once), and plain
# (keyless) increments on the same counter to nodes that are never crashed, each of which
# must be acknowledged at once so that it is counted exactly.
#
# While the streams run, node VICTIM is SIGKILLed and restarted on its WAL, cut off from
# its peers until a key it acknowledged before the crash, sent again with another amount,
# has been refused with 422 (it can know the key from its WAL only) and accepted with its
# own; then node ISLAND is cut off (its veth moved to a second bridge) for several seconds
# while both sides keep acknowledging new keys and retries of keys the other side
# acknowledged during the cut, then healed. Once the streams stop, every node must report
# exactly the sum of the logical operations and the plain increments, first as its value,
# then also as its totals (every key folded by its winner). Then node AMNESIAC loses its
# disk (SIGKILL, WAL removed, restarted empty, so it may answer keyed operations 503 until
# it has caught up): a hundred old keys sent to it again must change nothing, and its own
# old key with another amount must be refused. Last, a retry of an old key on every node
# answers the sum, and the key with another amount, direction or counter is refused with
# 422 on every node and changes nothing.
#
# GCTR_IDEM_STREAMS (client streams, default 2), GCTR_IDEM_PARTITION (seconds the cut
# lasts at least, default 8) and GCTR_IDEM_SEED (the streams' random seed) override.
# shellcheck disable=SC2016 # awk programs are single-quoted on purpose
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cluster_test_init "$@"

NODES=(1 2 3 4)
VICTIM=2
ISLAND=3
AMNESIAC=4
COUNTER=idem
HUB=$TEST_ID-hub
STREAMS=${GCTR_IDEM_STREAMS:-2}
PARTITION_SECONDS=${GCTR_IDEM_PARTITION:-8}
SEED=${GCTR_IDEM_SEED:-$((RANDOM * 32768 + RANDOM))}
# One attempt of a keyed operation: past this many seconds it is abandoned (the process
# killed, its effect unknown) and the key retried elsewhere. The CLI's own timeouts (2 s to
# connect, 10 s in all) are longer than this test wants.
ATTEMPT_SECONDS=3
# A logical operation not acknowledged this long after its first attempt fails the test.
OP_DEADLINE_SECONDS=60
# Logical operations acknowledged in each phase before the next fault.
OPS_PER_PHASE=15

ALL_NAMES=("${NODES[@]/#/n}")

start_node() {
    local n=$1 m seeds=()
    for m in "${NODES[@]}"; do
        ((m == n)) || seeds+=("$(gossip_of "$m")")
    done
    spawn "n$n" ip netns exec "$(ns "$n")" "$GCTR" node --name "n$n" \
        --addr "$(gossip_of "$n")" --http "$(http_of "$n")" --wal "$TEST_DIR/wal-n$n" \
        --seeds "$(IFS=,; echo "${seeds[*]}")" --gossip-interval 50ms
}

kill_node() {
    local pid
    pid=$(pid_of "n$1")
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    # Reaped here, so that the shell's "Killed" notice goes nowhere.
    wait "$pid" 2>/dev/null || true
}

set_phase() {
    echo "$1" >"$TEST_DIR/phase.tmp"
    mv "$TEST_DIR/phase.tmp" "$TEST_DIR/phase"
}

# ---- The client streams (run as separate processes; see client_stream).

# One attempt of `gctr VERB COUNTER --by AMOUNT --id KEY` on node N, bounded by
# ATTEMPT_SECONDS. Prints what the CLI printed (stdout and stderr).
keyed_attempt() {
    local n=$1 verb=$2 amount=$3 key=$4
    timeout -k 1 "$ATTEMPT_SECONDS" ip netns exec "$(ns "$n")" "$GCTR" "$verb" "$COUNTER" \
        --by "$amount" --id "$key" --http "$(http_of "$n")" 2>&1
}

# A random node; with an argument, a random node other than those named.
random_node() {
    local n
    while true; do
        n=${NODES[RANDOM % ${#NODES[@]}]}
        [[ " $* " == *" $n "* ]] || break
    done
    echo "$n"
}

other_side() {
    if (($1 == ISLAND)); then
        random_node "$ISLAND"
    else
        echo "$ISLAND"
    fi
}

# shellcheck disable=SC2153 # STREAM is set in each stream's environment
client_failed() {
    echo "stream $STREAM: $*" >"$TEST_DIR/client-$STREAM.failed"
    exit 1
}

log_event() {
    echo "$*" >>"$TEST_DIR/ops-$STREAM.log"
}

# Judges one attempt's output OUT and status RC for KEY on node N: prints "ok" or
# "failed", and fails the stream at once on a 422 (a key sent with its own parameters is
# never a mismatch) or on a success that does not print a number.
judge() {
    local key=$1 n=$2 rc=$3 out=$4
    if ((rc == 0)); then
        [[ $out =~ ^-?[0-9]+$ ]] ||
            client_failed "n$n acknowledged $key but printed '$out', not the counter's value"
        echo ok
    elif [[ $out == *"(HTTP 422)"* ]]; then
        client_failed "n$n refused $key, sent with its own parameters, as a mismatch: $out"
    else
        echo failed
    fi
}

# Sends KEY (VERB, AMOUNT) to nodes A and B at the same time; prints the nodes that
# acknowledged it, space-separated, and logs each attempt.
race() {
    local key=$1 verb=$2 amount=$3 a=$4 b=$5 rc_a=0 rc_b=0 out_a out_b acked=()
    keyed_attempt "$a" "$verb" "$amount" "$key" >"$TEST_DIR/race-$STREAM.a" &
    local pid_a=$!
    keyed_attempt "$b" "$verb" "$amount" "$key" >"$TEST_DIR/race-$STREAM.b" || rc_b=$?
    wait "$pid_a" || rc_a=$?
    out_a=$(<"$TEST_DIR/race-$STREAM.a")
    out_b=$(<"$TEST_DIR/race-$STREAM.b")
    [[ $(judge "$key" "$a" "$rc_a" "$out_a") == ok ]] && acked+=("$a")
    [[ $(judge "$key" "$b" "$rc_b" "$out_b") == ok ]] && acked+=("$b")
    echo "${acked[*]}"
}

# One logical operation under a new key, retried on other nodes until acknowledged.
keyed_op() {
    local key=$1 verb=inc amount=$((RANDOM % 20 + 1)) phase start attempts=0 n=0 out rc
    ((RANDOM % 3 == 0)) && verb=dec
    start=$(now_ms)
    while true; do
        phase=$(<"$TEST_DIR/phase")
        if ((attempts == 0 && RANDOM % 6 == 0)); then
            # The first attempt on two nodes at once: both may accept the key.
            local a b acked
            a=$(random_node)
            b=$(random_node "$a")
            attempts=2
            acked=$(race "$key" "$verb" "$amount" "$a" "$b")
            [[ -e $TEST_DIR/client-$STREAM.failed ]] && exit 1
            log_event "race $key n$a n$b acked-by:${acked// /,} $phase"
            if [[ -n $acked ]]; then
                n=${acked%% *}
                break
            fi
            n=$b
        else
            n=$(random_node "$n")
            attempts=$((attempts + 1))
            rc=0
            out=$(keyed_attempt "$n" "$verb" "$amount" "$key") || rc=$?
            [[ $(judge "$key" "$n" "$rc" "$out") == ok ]] && break
            [[ -e $TEST_DIR/client-$STREAM.failed ]] && exit 1
            log_event "retry $key n$n $phase exit $rc: ${out//$'\n'/ }"
        fi
        (($(now_ms) - start < OP_DEADLINE_SECONDS * 1000)) ||
            client_failed "$key ($verb --by $amount) not acknowledged after $attempts attempts" \
                "in ${OP_DEADLINE_SECONDS}s; whether it counted is unknown"
        sleep 0.05
    done
    log_event "ack $key $verb $amount n$n $attempts $phase"
    ACK_KEY+=("$key")
    ACK_VERB+=("$verb")
    ACK_AMOUNT+=("$amount")
    ACK_NODE+=("$n")
    ACK_PHASE+=("$phase")
}

# A plain increment or decrement, sent to a node that is never crashed; it must be
# acknowledged at once, or its effect would be unknown and the final sum not exact.
plain_op() {
    local verb=inc amount=$((RANDOM % 20 + 1)) n out phase
    ((RANDOM % 3 == 0)) && verb=dec
    n=$(random_node "$VICTIM")
    phase=$(<"$TEST_DIR/phase")
    out=$(ip netns exec "$(ns "$n")" "$GCTR" "$verb" "$COUNTER" --by "$amount" \
        --http "$(http_of "$n")" 2>&1) ||
        client_failed "n$n did not acknowledge a plain $verb --by $amount ($phase): $out"
    log_event "plain $verb $amount n$n $phase"
}

# Sends an acknowledged key again, with its own parameters, to two other nodes at once.
# During the cut it prefers keys acknowledged during the cut and a node on the other
# side: a key then accepted on both sides must still count once after the heal.
duplicate_op() {
    local phase i count=${#ACK_KEY[@]} j recent=()
    phase=$(<"$TEST_DIR/phase")
    if [[ $phase == partitioned ]]; then
        for ((j = 0; j < count; j++)); do
            [[ ${ACK_PHASE[j]} == partitioned ]] && recent+=("$j")
        done
    fi
    if ((${#recent[@]} && RANDOM % 3 != 0)); then
        i=${recent[RANDOM % ${#recent[@]}]}
    elif ((RANDOM % 2)); then
        # One of the last ten.
        i=$((count - 1 - RANDOM % (count < 10 ? count : 10)))
    else
        i=$((RANDOM % count))
    fi
    local key=${ACK_KEY[i]} first=${ACK_NODE[i]} a b acked split=same
    if [[ $phase == partitioned ]]; then
        a=$(other_side "$first")
    else
        a=$(random_node "$first")
    fi
    b=$(random_node "$first" "$a")
    acked=$(race "$key" "${ACK_VERB[i]}" "${ACK_AMOUNT[i]}" "$a" "$b")
    [[ -e $TEST_DIR/client-$STREAM.failed ]] && exit 1
    if [[ $phase == partitioned && ${ACK_PHASE[i]} == partitioned &&
        " $acked " == *" $a "* ]]; then
        split="split"
    fi
    log_event "dup $key first-n$first n$a n$b acked-by:${acked// /,} $phase $split"
}

# Logical operations until the stop file appears; writes client-STREAM.done at the end.
client_stream() {
    set -uo pipefail
    RANDOM=$((SEED + STREAM))
    ACK_KEY=() ACK_VERB=() ACK_AMOUNT=() ACK_NODE=() ACK_PHASE=()
    local i=0 key
    while [[ ! -e $TEST_DIR/stop ]]; do
        i=$((i + 1))
        if ((RANDOM % 5 == 0)); then
            plain_op
        else
            key=idem-s$STREAM-$i
            if ((i == 7)); then
                # The longest key allowed: 128 bytes.
                key+=-$(printf 'x%.0s' {1..128})
                key=${key:0:128}
            fi
            keyed_op "$key"
        fi
        if ((${#ACK_KEY[@]} && RANDOM % 3 == 0)); then
            duplicate_op
        fi
    done
    touch "$TEST_DIR/client-$STREAM.done"
}

# ---- Watching the streams from the test's shell.

check_streams() {
    local f
    for f in "$TEST_DIR"/client-*.failed; do
        [[ -e $f ]] && fail "client $(cat "$f")"
    done
    return 0
}

# Events of the streams' logs matching an awk condition on the fields, counted.
count_events() {
    { cat "$TEST_DIR"/ops-*.log 2>/dev/null || true; } | awk "$1 { c++ } END { print c + 0 }"
}

# Waits up to SECS seconds until the awk condition COND holds for at least WANT events,
# failing at once if a stream failed.
wait_events() {
    local desc=$1 secs=$2 want=$3 cond=$4 deadline
    deadline=$(($(now_ms) + secs * 1000))
    while (($(count_events "$cond") < want)); do
        check_streams
        (($(now_ms) < deadline)) ||
            fail "timed out after ${secs}s waiting for $desc ($(count_events "$cond") of $want)"
        sleep 0.1
    done
}

# The sum every node must end at: the logical operations and the plain ones.
expected_sum() {
    cat "$TEST_DIR"/ops-*.log | awk '
        $1 == "ack" { s += ($3 == "inc" ? $4 : -$4) }
        $1 == "plain" { s += ($2 == "inc" ? $3 : -$3) }
        END { print s + 0 }'
}

# A key node N acknowledged (in PHASE, if given) at the first attempt, not raced (so N
# accepted it itself, durably, before answering), with its verb and amount: "KEY VERB
# AMOUNT".
acked_by() {
    cat "$TEST_DIR"/ops-*.log | awk -v n="n$1" -v p="${2:-}" \
        '$1 == "ack" && $5 == n && $6 == 1 && (p == "" || $7 == p) { print $2, $3, $4; exit }'
}

# Sends KEY to node N with VERB and AMOUNT (on COUNTER, default the test's) until N
# answers 422 (a 503 or no answer while N is not ready is retried), for up to SECS
# seconds; fails if N accepts it.
expect_mismatch() {
    local n=$1 key=$2 verb=$3 amount=$4 secs=$5 counter=${6:-$COUNTER} out rc deadline
    deadline=$(($(now_ms) + secs * 1000))
    while true; do
        rc=0
        out=$(client "$n" "$verb" "$counter" --by "$amount" --id "$key" 2>&1) || rc=$?
        ((rc != 0)) || fail "n$n accepted $key as $verb $counter --by $amount, but it was" \
            "acknowledged with other parameters (it printed $out)"
        [[ $out == *"(HTTP 422)"* ]] && return 0
        (($(now_ms) < deadline)) ||
            fail "n$n did not refuse $key as $verb $counter --by $amount with 422 in" \
                "${secs}s: $out"
        sleep 0.1
    done
}

# Sends KEY to node N with its own VERB and AMOUNT until N acknowledges it (503 or no
# answer retried) for up to SECS seconds; prints what N printed.
expect_retry_ok() {
    local n=$1 key=$2 verb=$3 amount=$4 secs=$5 out rc deadline
    deadline=$(($(now_ms) + secs * 1000))
    while true; do
        rc=0
        out=$(client "$n" "$verb" "$COUNTER" --by "$amount" --id "$key" 2>&1) || rc=$?
        if ((rc == 0)); then
            echo "$out"
            return 0
        fi
        [[ $out != *"(HTTP 422)"* ]] ||
            fail "n$n refused a retry of $key with its own parameters as a mismatch: $out"
        (($(now_ms) < deadline)) ||
            fail "n$n did not acknowledge a retry of $key in ${secs}s: $out"
        sleep 0.1
    done
}

# Succeeds when on every node both the counter's value and its totals (plain increments
# and folded keys: the sum of p - n over the origins) are SUM, that is when every key has
# been folded by its winner; prints value/totals for each node.
all_folded() {
    local sum=$1 n json line seen="" ok=0
    for n in "${NODES[@]}"; do
        json=$(client "$n" get "$COUNTER" --json 2>&1) || json='{}'
        line=$(python3 -c '
import json, sys
try:
    c = json.loads(sys.argv[1])
    print(c["value"], sum(o["p"] - o["n"] for o in c["origins"]))
except (ValueError, KeyError):
    print("error", "error")' "$json")
        seen+="n$n=${line/ //} "
        [[ $line == "$sum $sum" ]] || ok=1
    done
    echo "value/totals: ${seen% }"
    return "$ok"
}

# Polls CMD every 0.1 s until it succeeds (status 0) or SECS seconds have passed (1).
poll() {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    until "$@" >/dev/null 2>&1; do
        (($(now_ms) < deadline)) || return 1
        sleep 0.1
    done
}

# Node N's totals of the counter by origin: "ORIGIN p=P n=N ...".
origin_totals() {
    python3 -c '
import json, sys
origins = json.loads(sys.argv[1])["origins"]
print(" ".join("%s p=%d n=%d" % (o["origin"], o["p"], o["n"]) for o in origins))' \
        "$(client "$1" get "$COUNTER" --json)"
}

# Waits up to SECS seconds until every node reports SUM; if they agree on another value,
# says by how much it is off.
wait_sum() {
    local sum=$1 secs=$2 deadline seen values
    deadline=$(($(now_ms) + secs * 1000))
    until seen=$(all_report "$sum" "${NODES[@]}"); do
        if (($(now_ms) >= deadline)); then
            values=$(tr ' ' '\n' <<<"$seen" | cut -d= -f2 | sort -u)
            if [[ $values =~ ^-?[0-9]+$ ]]; then
                fail "every node converged on $values, not on $sum, the sum of the" \
                    "acknowledged operations (off by $((values - sum)): an operation counted" \
                    "twice, or lost, or a refused one applied)"
            fi
            fail "the nodes did not converge on the exact sum $sum in ${secs}s ($seen)"
        fi
        sleep 0.1
    done
}

opposite() {
    if [[ $1 == inc ]]; then echo dec; else echo inc; fi
}

# On failure, the last events of each stream (GCTR_TEST_KEEP=1 keeps the whole logs).
show_streams() {
    (($1 != 0)) || return 0
    local log
    for log in "$TEST_DIR"/ops-*.log; do
        [[ -e $log ]] || continue
        echo "--- $TEST_NAME: last 15 events of $(basename "$log")" >&2
        tail -n 15 "$log" >&2
    done
    if [[ -e $TEST_DIR/amnesia.log ]]; then
        echo "--- $TEST_NAME: first 15 and last 5 answers of n$AMNESIAC after it restarted empty" >&2
        head -n 15 "$TEST_DIR/amnesia.log" >&2
        tail -n 5 "$TEST_DIR/amnesia.log" >&2
    fi
}

# ---- The test.

"$GCTR" inc --help | grep -q -- '--id' ||
    fail "$GCTR has no 'inc --id' (idempotency keys); build a gctr that has them"

step "network: hub namespace $HUB, bridges br0 and br1, nodes ${ALL_NAMES[*]} on br0"
hub_network "$HUB" "${NODES[@]}"

step "starting ${ALL_NAMES[*]}, each with its WAL and seeded with the others"
for n in "${NODES[@]}"; do
    start_node "$n"
done
for n in "${NODES[@]}"; do
    wait_until "n$n serves HTTP" 10 client "$n" get "$COUNTER"
done
for n in "${NODES[@]}"; do
    wait_until "n$n sees every node alive" 15 sees "$n" alive "${ALL_NAMES[@]}"
done

step "$STREAMS client streams (seed $SEED): keyed operations, retries, duplicates, plain increments"
set_phase steady
on_exit show_streams
export TEST_DIR TEST_ID GCTR COUNTER VICTIM ISLAND SEED ATTEMPT_SECONDS OP_DEADLINE_SECONDS
export -f ns ip_of http_of keyed_attempt random_node other_side client_failed log_event \
    judge race keyed_op plain_op duplicate_op client_stream now_ms
export NODES_LIST="${NODES[*]}"
for ((s = 1; s <= STREAMS; s++)); do
    spawn "client-$s" env STREAM="$s" bash -c 'read -ra NODES <<<"$NODES_LIST"; client_stream'
done
started_at=$(now_ms)
wait_events "2 keys acknowledged by n$VICTIM at the first attempt" 60 2 \
    "\$1 == \"ack\" && \$5 == \"n$VICTIM\" && \$6 == 1"
wait_events "$OPS_PER_PHASE acknowledged operations" 60 "$OPS_PER_PHASE" '$1 == "ack"'

step "SIGKILL n$VICTIM while the streams run"
kill_node "$VICTIM"
set_phase crashed
wait_events "$OPS_PER_PHASE operations acknowledged with n$VICTIM down" 60 "$OPS_PER_PHASE" \
    '$1 == "ack" && $7 == "crashed"'

# Restarted cut off from its peers (its veth on no bridge), so that what it knows of the
# keys it acknowledged before the crash can come from its WAL only.
step "restarting n$VICTIM on its WAL, alone until it has shown that it knows its keys"
ip -n "$HUB" link set "v$VICTIM" nomaster
start_node "$VICTIM"
set_phase restarted
wait_until "n$VICTIM serves HTTP again" 10 client "$VICTIM" get "$COUNTER"
read -r key verb amount <<<"$(acked_by "$VICTIM" steady)"
[[ -n $key ]] || fail "no key acknowledged by n$VICTIM before the crash"
# With no live member to confirm its origin, it answers 503 until --fence-timeout (5 s).
expect_mismatch "$VICTIM" "$key" "$verb" $((amount + 1)) 20
expect_retry_ok "$VICTIM" "$key" "$verb" "$amount" 20 >/dev/null
ip -n "$HUB" link set "v$VICTIM" master br0
pass "after its restart, alone, n$VICTIM refuses $key (acknowledged by it before the" \
    "crash) with another amount and accepts it with its own"
wait_events "a new key acknowledged by n$VICTIM after its restart" 30 1 \
    "\$1 == \"ack\" && \$5 == \"n$VICTIM\" && \$7 == \"restarted\""
wait_events "$OPS_PER_PHASE operations acknowledged after the restart" 60 "$OPS_PER_PHASE" \
    '$1 == "ack" && $7 == "restarted"'
for n in "${NODES[@]}"; do
    wait_until "n$n sees every node alive" 20 sees "$n" alive "${ALL_NAMES[@]}"
done

step "cutting n$ISLAND off (its veth on br1) for at least ${PARTITION_SECONDS}s while the streams run"
ip -n "$HUB" link set "v$ISLAND" master br1
set_phase partitioned
cut_at=$(now_ms)
wait_until "n1 no longer sees n$ISLAND alive" 20 sees 1 not-alive "n$ISLAND"
wait_events "a new key acknowledged by n$ISLAND during the cut" 30 1 \
    "\$1 == \"ack\" && \$5 == \"n$ISLAND\" && \$7 == \"partitioned\""
wait_events "a new key acknowledged by the other side during the cut" 30 1 \
    "\$1 == \"ack\" && \$5 != \"n$ISLAND\" && \$7 == \"partitioned\""
wait_events "3 keys acknowledged on one side during the cut and again on the other" 30 3 \
    '$1 == "dup" && $NF == "split"'
while (($(now_ms) - cut_at < PARTITION_SECONDS * 1000)); do
    check_streams
    sleep 0.1
done

step "healing: n$ISLAND back on br0"
set_phase healed
ip -n "$HUB" link set "v$ISLAND" master br0
healed_at=$(now_ms)
for n in "${NODES[@]}"; do
    wait_until "n$n sees every node alive after the heal" 30 sees "$n" alive "${ALL_NAMES[@]}"
done
wait_events "$OPS_PER_PHASE operations acknowledged after the heal" 60 "$OPS_PER_PHASE" \
    '$1 == "ack" && $7 == "healed"'

step "stopping the streams; every operation in flight must be acknowledged"
touch "$TEST_DIR/stop"
stop_deadline=$(($(now_ms) + (OP_DEADLINE_SECONDS + 10) * 1000))
for ((s = 1; s <= STREAMS; s++)); do
    until [[ -e $TEST_DIR/client-$s.done ]]; do
        check_streams
        (($(now_ms) < stop_deadline)) || fail "client stream $s did not finish"
        sleep 0.1
    done
done
stream_seconds=$((($(now_ms) - started_at) / 1000))

sum=$(expected_sum)
keyed=$(count_events '$1 == "ack"')
plain=$(count_events '$1 == "plain"')
retried=$(cat "$TEST_DIR"/ops-*.log | awk '$1 == "retry" { k[$2] = 1 } END { print length(k) }')
most_attempts=$(cat "$TEST_DIR"/ops-*.log | awk '$1 == "ack" && $6 > m { m = $6 } END { print m + 0 }')
dups=$(count_events '$1 == "dup"')
dup_acks=$(count_events '$1 == "dup" && $6 != "acked-by:"')
splits=$(count_events '$1 == "dup" && $NF == "split"')
races=$(count_events '$1 == "race"')
failed_attempts=$(count_events '$1 == "retry"')
unready=$(count_events '$1 == "retry" && /HTTP 503/')
wait_sum "$sum" 30
pass "every node reports $sum: $keyed keyed operations ($retried retried after" \
    "$failed_attempts failed attempts, $unready of them 503s, at most $most_attempts attempts" \
    "for one; $races first attempts raced on two nodes), $plain plain ones, $dups duplicate" \
    "sends ($dup_acks acknowledged, $splits accepted on both sides of the cut)" \
    "in ${stream_seconds}s of streams; converged $(($(now_ms) - healed_at)) ms after the heal"

wait_until "every key folded into the totals on every node, at $sum" 30 all_folded "$sum"
pass "every key folded by its winner: values and totals at $sum on every node" \
    "$(($(now_ms) - healed_at)) ms after the heal"

step "n$AMNESIAC loses its disk: SIGKILL, WAL removed, restarted empty; every old key again there"
kill_node "$AMNESIAC"
rm -rf "$TEST_DIR/wal-n$AMNESIAC"
start_node "$AMNESIAC"
# The first retry goes as soon as the node answers at all, as an eager client's would.
# Until it has caught up with a peer it may answer keyed operations 503; after that it
# must recognise every key: a retry answers the value, counts nothing, is never a 422.
unready=0 recognised=0 restarted_at=$(now_ms)
while read -r key verb amount; do
    deadline=$(($(now_ms) + 20000))
    while true; do
        rc=0
        out=$(client "$AMNESIAC" "$verb" "$COUNTER" --by "$amount" --id "$key" 2>&1) || rc=$?
        echo "+$(($(now_ms) - restarted_at))ms $key $verb $amount exit $rc: $out" >>"$TEST_DIR/amnesia.log"
        ((rc == 0)) && break
        [[ $out != *"(HTTP 422)"* ]] ||
            fail "n$AMNESIAC, restarted empty, refused $key with its own parameters: $out"
        [[ $out == *"(HTTP 503)"* ]] && unready=$((unready + 1))
        (($(now_ms) < deadline)) ||
            fail "n$AMNESIAC, restarted empty, did not acknowledge $key in 20s: $out"
        sleep 0.01
    done
    recognised=$((recognised + 1))
done < <(cat "$TEST_DIR"/ops-*.log | awk '$1 == "ack" { print $2, $3, $4 }' | shuf -n 100)
read -r key verb amount <<<"$(acked_by "$AMNESIAC")"
[[ -n $key ]] || fail "no key acknowledged by n$AMNESIAC before the streams stopped"
expect_mismatch "$AMNESIAC" "$key" "$verb" $((amount + 1)) 10
poll 30 all_folded "$sum" ||
    fail "after n$AMNESIAC restarted empty and was sent old keys again, the nodes are not all" \
        "at $sum: $(all_folded "$sum"); n1's totals by origin: $(origin_totals 1)"
pass "n$AMNESIAC restarted empty: $recognised old keys sent to it again ($unready answers 503" \
    "before it caught up) changed nothing, and its own old key $key with another amount is 422"

step "an old key again on every node: its own parameters answer $sum; another amount," \
    "direction or counter 422"
read -r key verb amount <<<"$(awk '$1 == "ack" { print $2, $3, $4; exit }' "$TEST_DIR/ops-1.log")"
for n in "${NODES[@]}"; do
    out=$(expect_retry_ok "$n" "$key" "$verb" "$amount" 10)
    [[ $out == "$sum" ]] || fail "n$n answered a retry of $key with $out, not the value $sum"
    expect_mismatch "$n" "$key" "$verb" $((amount + 1)) 10
    expect_mismatch "$n" "$key" "$(opposite "$verb")" "$amount" 10
    expect_mismatch "$n" "$key" "$verb" "$amount" 10 "$COUNTER-other"
done
hold_for "every node at $sum after the mismatches" 1 all_folded "$sum"
COUNTER=$COUNTER-other all_report 0 "${NODES[@]}" >/dev/null ||
    fail "a key refused on $COUNTER-other changed it: $(COUNTER=$COUNTER-other all_report 0 "${NODES[@]}")"
pass "a retry of $key answers $sum on every node; another amount, direction or counter is" \
    "refused with 422 everywhere and changes nothing; $(($(now_ms) - started_at)) ms in all"

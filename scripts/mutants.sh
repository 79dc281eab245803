#!/usr/bin/env bash
# Mutation testing of the core: cargo-mutants changes src/crdt.rs (and its counter table,
# src/crdt/table.rs), src/engine.rs, src/codec.rs and src/wal/recovery.rs one small edit
# at a time (an operator swapped, a function body replaced by a default, a match arm
# deleted) and runs the fast tests against each: the library's unit tests and
# tests/{properties,simulation,engine,origin_ownership}.rs, with the build restricted
# to them too. A mutant no test fails on is "missed". Prints how many were caught and
# missed, then every missed mutant that scripts/mutants-equivalent.txt does not list as
# equivalent; exits 1 if there is one.
# Not run in CI: 26 to 40 s a mutant on a shared 2-core machine; hours for the core
#
# Usage: scripts/mutants.sh [FILE...] [-- CARGO-MUTANTS-ARGS...]
#   FILE   source files to mutate (default: the core files above)
#   e.g.   scripts/mutants.sh src/wal/recovery.rs -- --jobs 2
# Installs cargo-mutants (cargo install cargo-mutants --locked) when missing. Results,
# with each mutant's diff and test log, go to target/mutants/mutants.out/ (or
# $GCTR_MUTANTS_OUT/mutants.out/, so two runs can go side by side).
set -euo pipefail
cd "$(dirname "$0")/.."

files=()
while (($#)) && [[ $1 != -- ]]; do
    files+=("$1")
    shift
done
[[ ${1:-} == -- ]] && shift
((${#files[@]})) || files=(src/crdt.rs src/crdt/table.rs src/engine.rs src/codec.rs src/wal/recovery.rs)

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants.sh: installing cargo-mutants"
    cargo install cargo-mutants --locked
fi

file_args=()
for f in "${files[@]}"; do
    file_args+=(--file "$f")
done
out=${GCTR_MUTANTS_OUT:-target/mutants}
mkdir -p "$out"
# The fast tests only: each -C goes to every cargo build and test cargo-mutants runs.
tests=(-C --lib -C --test=properties -C --test=simulation -C --test=engine
    -C --test=origin_ownership)
status=0
cargo mutants "${file_args[@]}" "${tests[@]}" --copy-target=true --output "$out" \
    --no-shuffle "$@" || status=$?
# cargo-mutants exits 2 when mutants were missed, 3 on timeouts; anything else is a failure.
if ((status != 0 && status != 2 && status != 3)); then
    echo "mutants.sh: cargo mutants failed (exit $status)" >&2
    exit "$status"
fi

results=$out/mutants.out
count() { [[ -f $results/$1 ]] && wc -l <"$results/$1" || echo 0; }
echo "mutants.sh: caught $(count caught.txt), missed $(count missed.txt)," \
    "timed out $(count timeout.txt), unviable $(count unviable.txt)"

# Missed mutants by file and description without line and column, which move with every
# edit; the equivalence list names them the same way, then " | " and why.
known=$(grep -v '^#' scripts/mutants-equivalent.txt | sed -n 's/ | .*//p' | sort -u)
new=$(sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /' "$results/missed.txt" 2>/dev/null |
    sort -u | comm -23 - <(echo "$known") || true)
if [[ -n $new ]]; then
    echo "mutants.sh: missed and not listed as equivalent in scripts/mutants-equivalent.txt:"
    echo "$new"
    exit 1
fi
echo "mutants.sh: every missed mutant is listed as equivalent"

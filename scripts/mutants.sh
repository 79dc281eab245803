#!/usr/bin/env bash
# Mutation testing of the core: cargo-mutants changes src/crdt.rs (and its counter table
# src/crdt/table.rs and retirement src/crdt/retire.rs), src/engine.rs, src/summary.rs,
# src/codec.rs and src/wal/recovery.rs one small edit
# at a time (an operator swapped, a function body replaced by a default, a match arm
# deleted) and runs the fast tests against each, with the build restricted to them too:
# for src/wal/ the library's unit tests, where every WAL test lives (one build of the
# crate a mutant instead of two); for the rest those and
# tests/{properties,simulation,engine,origin_ownership,digest_summary}.rs. A mutant no test fails on is
# "missed". Prints how many were caught and missed, then every missed mutant that
# scripts/mutants-equivalent.txt does not list as equivalent; exits 1 if there is one.
# Not run in CI: 10 to 40 s a mutant on a shared 2-core machine; about two hours for the
# core with --jobs 2.
#
# Usage: scripts/mutants.sh [FILE...] [-- CARGO-MUTANTS-ARGS...]
#   FILE   source files to mutate (default: the core files above)
#   e.g.   scripts/mutants.sh src/wal/recovery.rs -- --jobs 2
#          scripts/mutants.sh -- --jobs 2 --iterate   (skips mutants caught before)
# Installs cargo-mutants (cargo install cargo-mutants --locked) when missing. Results,
# with each mutant's diff and test log, go to target/mutants/{wal,core}/mutants.out/ (or
# under $GCTR_MUTANTS_OUT, so two runs can go side by side).
set -euo pipefail
cd "$(dirname "$0")/.."

files=()
while (($#)) && [[ $1 != -- ]]; do
    files+=("$1")
    shift
done
[[ ${1:-} == -- ]] && shift
((${#files[@]})) || files=(src/crdt.rs src/crdt/table.rs src/crdt/retire.rs src/engine.rs src/summary.rs
    src/codec.rs src/wal/recovery.rs)

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants.sh: installing cargo-mutants"
    cargo install cargo-mutants --locked
fi

out=${GCTR_MUTANTS_OUT:-target/mutants}
wal_files=()
core_files=()
for f in "${files[@]}"; do
    case $f in
    src/wal/*) wal_files+=(--file "$f") ;;
    *) core_files+=(--file "$f") ;;
    esac
done

# Runs cargo mutants on one group of files with the given test selection; each -C goes
# to every cargo build and test cargo-mutants runs.
run_group() {
    local name=$1
    shift
    mkdir -p "$out/$name"
    local status=0
    cargo mutants "$@" --copy-target=true --output "$out/$name" --no-shuffle \
        "${extra[@]}" || status=$?
    # cargo-mutants exits 2 when mutants were missed, 3 on timeouts; anything else fails.
    if ((status != 0 && status != 2 && status != 3)); then
        echo "mutants.sh: cargo mutants failed on the $name files (exit $status)" >&2
        exit "$status"
    fi
}

extra=("$@")
groups=()
if ((${#wal_files[@]})); then
    run_group wal "${wal_files[@]}" -C --lib
    groups+=(wal)
fi
if ((${#core_files[@]})); then
    run_group core "${core_files[@]}" -C --lib -C --test=properties -C --test=simulation \
        -C --test=engine -C --test=origin_ownership -C --test=digest_summary
    groups+=(core)
fi

count() {
    local n=0 g
    for g in "${groups[@]}"; do
        [[ -f $out/$g/mutants.out/$1 ]] && n=$((n + $(wc -l <"$out/$g/mutants.out/$1")))
    done
    echo "$n"
}
echo "mutants.sh: caught $(count caught.txt), missed $(count missed.txt)," \
    "timed out $(count timeout.txt), unviable $(count unviable.txt);" \
    "caught or unviable in earlier runs (--iterate): $(count previously_caught.txt)"

# Missed mutants by file and description without line and column, which move with every
# edit; the equivalence list names them the same way at the start of a line, then " | "
# and why (a name or a reason may itself hold " | ", so a line is matched by its start).
missed=$(for g in "${groups[@]}"; do cat "$out/$g/mutants.out/missed.txt" 2>/dev/null; done)
new=$(sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /' <<<"$missed" | grep . | sort -u |
    while IFS= read -r name; do
        grep -v '^#' scripts/mutants-equivalent.txt |
            awk -v start="$name | " 'index($0, start) == 1 { found = 1 } END { exit !found }' ||
            echo "$name"
    done || true)
if [[ -n $new ]]; then
    echo "mutants.sh: missed and not listed as equivalent in scripts/mutants-equivalent.txt:"
    echo "$new"
    exit 1
fi
echo "mutants.sh: every missed mutant is listed as equivalent"

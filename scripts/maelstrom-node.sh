#!/bin/sh
# Runs one gctr node under Maelstrom, which starts its --bin with no arguments.
# Options after the script name reach `gctr maelstrom` unchanged; GCTR_BIN overrides the
# binary (default: target/release/gctr beside this script's repository).
here=$(cd "$(dirname "$0")/.." && pwd)
exec "${GCTR_BIN:-$here/target/release/gctr}" maelstrom "$@"

#!/usr/bin/env bash
# Counts the instructions the aegis server spends per run, with callgrind, so the figure does
# not depend on other load on the machine.
#
#   scripts/callgrind-server.sh [BIN_DIR] [RUNS]
#
# BIN_DIR holds release builds of `aegis` and of `loadgen`, in BIN_DIR or BIN_DIR/examples
# (default: the release directory of $CARGO_TARGET_DIR, else of target). The script starts `aegis serve` under callgrind on a fresh SQLite
# file, warms it up with 200 runs of `loadgen --plain`, zeroes the counters, drives RUNS runs
# (default 1000) with `loadgen --plain --plain-threads 16`, and dumps the counters. With
# CONCURRENCY=N set, the warm-up and the measured runs use the closed loop at N workers instead
# (`--concurrency N --runs RUNS`: each run created, then long-polled until terminal). It prints
# the instructions per run and leaves the profile in $OUT (default /tmp/aegis-callgrind) for
# callgrind_annotate. Everything listens on 127.0.0.1 only.
set -euo pipefail

bin_dir=${1:-${CARGO_TARGET_DIR:-target}/release}
aegis=$bin_dir/aegis
loadgen=$bin_dir/examples/loadgen
[ -x "$loadgen" ] || loadgen=$bin_dir/loadgen
runs=${2:-1000}
out=${OUT:-/tmp/aegis-callgrind}
port=${PORT:-18931}

rm -rf "$out"
mkdir -p "$out"
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" \
  "$aegis" serve --db "$out/aegis.db" --bind "127.0.0.1:$port" --workers 6000 \
  >"$out/server.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT

for _ in $(seq 1 600); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

drive() {
  local count=$1
  if [ -n "${CONCURRENCY:-}" ]; then
    "$loadgen" --server "http://127.0.0.1:$port" --server-pid "$server" --concurrency "$CONCURRENCY" \
      --runs "$count" --duration-s 3600 --run-timeout-s 3600 --rss-every-s 0 --json
  else
    "$loadgen" --server "http://127.0.0.1:$port" --server-pid "$server" --plain --plain-threads 16 \
      --plain-runs "$count" --json
  fi
}

drive 200 >"$out/warmup.json"
callgrind_control -z "$server" >/dev/null
drive "$runs" | tee "$out/measured.json"
callgrind_control -d "$server" >/dev/null

# The dump after zeroing is the file with the highest part number.
dump=$(ls -t "$out"/callgrind.out.* | head -n 1)
total=$(grep -m1 '^summary:' "$dump" | awk '{print $2}')
echo "instructions: $total total, $((total / runs)) per run ($dump)"

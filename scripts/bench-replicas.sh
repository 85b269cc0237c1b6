#!/usr/bin/env bash
# Measures completed runs/s with one, two and three `aegis serve` replicas on one PostgreSQL
# database, with the same load generator (closed loop, instant mock model, C=64), and prints one
# JSON line per repetition. The cluster keeps PostgreSQL's default durability (fsync and
# synchronous_commit on), unlike the test cluster, so the figures are those of a real set-up.
#
#   cargo build --release -p aegis-http --bin aegis -p aegis --example loadgen
#   scripts/bench-replicas.sh                      # 1, 2, 3 replicas; C=64; 10 s; 3 repetitions
#   REPLICAS="1 2" REPS=1 DURATION=5 scripts/bench-replicas.sh
#
# Everything listens on 127.0.0.1 only. It needs PostgreSQL's server programs (Debian:
# apt-get install postgresql); under root the cluster runs as the postgres user.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-target/release}
replicas=${REPLICAS:-1 2 3}
reps=${REPS:-3}
duration=${DURATION:-10}
concurrency=${CONCURRENCY:-64}
workers=${WORKERS:-256}

for program in "$bin/aegis" "$bin/examples/loadgen"; do
  [ -x "$program" ] || { echo "bench-replicas: $program not built; see the usage above" >&2; exit 1; }
done
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
[ -x "$bindir/initdb" ] || { echo "bench-replicas: initdb not found; set PG_BINDIR" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/aegis-bench.XXXXXX")
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$work"
  as_owner=(runuser -u postgres --)
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"${as_owner[@]}" "$bindir/initdb" -D "$work/data" -U postgres --auth=trust --no-instructions >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; exit 1; }
port=$((20000 + RANDOM % 20000))
"${as_owner[@]}" "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$work -c max_connections=200" \
  start >/dev/null
psql=("${as_owner[@]}" psql -h 127.0.0.1 -p "$port" -U postgres -q -v ON_ERROR_STOP=1)

# Starts one replica on database $1 and appends its address to `addrs` once it listens. It
# must not run in a subshell, or `pids` would miss the replica and it would outlive its turn.
start_replica() {
  local out="$work/replica.${#pids[@]}.$RANDOM.out"
  "$bin/aegis" serve --database-url "postgres://postgres@127.0.0.1:$port/$1" --bind 127.0.0.1:0 \
    --workers "$workers" >"$out" 2>"$out.log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    if grep -q '^listening on ' "$out" 2>/dev/null; then
      addrs+=("$(sed -n 's/^listening on //p' "$out")")
      return 0
    fi
    sleep 0.05
  done
  echo "bench-replicas: a replica did not start; its log follows" >&2
  cat "$out.log" >&2
  return 1
}

for n in $replicas; do
  for rep in $(seq 1 "$reps"); do
    db="bench_${n}_${rep}"
    "${psql[@]}" -c "CREATE DATABASE $db" postgres
    addrs=()
    for _ in $(seq 1 "$n"); do start_replica "$db"; done
    also=()
    for addr in "${addrs[@]:1}"; do also+=(--also-server "http://$addr"); done
    result=$("$bin/examples/loadgen" --server "http://${addrs[0]}" "${also[@]}" \
      --concurrency "$concurrency" --duration-s "$duration" --json)
    echo "{\"replicas\": $n, \"repetition\": $rep, \"loadgen\": $result}"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
    "${psql[@]}" -c "DROP DATABASE $db" postgres
  done
done

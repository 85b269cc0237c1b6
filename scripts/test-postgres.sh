#!/usr/bin/env bash
# Runs a command against a throw-away PostgreSQL cluster: initdb into a temporary directory,
# start it on 127.0.0.1 at a free port with trust authentication, export
# AEGIS_TEST_DATABASE_URL, run the command, then stop the cluster and delete it.
#
#   scripts/test-postgres.sh                     # cargo test --workspace
#   scripts/test-postgres.sh cargo test -p aegis-store-postgres
#
# It needs PostgreSQL's server programs (Debian: apt-get install postgresql). PostgreSQL
# refuses to run as root, so under root the cluster runs as the postgres user.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  set -- cargo test --workspace
fi

bindir=${PG_BINDIR:-}
if [ -z "$bindir" ]; then
  # Debian keeps the server programs out of PATH, one directory per major version.
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$bindir" ] && command -v initdb >/dev/null; then
  bindir=$(dirname "$(command -v initdb)")
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "test-postgres: initdb not found; install PostgreSQL (Debian: apt-get install postgresql) or set PG_BINDIR" >&2
  exit 1
fi

cluster=$(mktemp -d "${TMPDIR:-/tmp}/aegis-pg.XXXXXX")
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$cluster"
  as_owner=(runuser -u postgres --)
fi

stop_cluster() {
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$cluster"
}
trap stop_cluster EXIT

"${as_owner[@]}" "$bindir/initdb" -D "$cluster/data" -U postgres --auth=trust --encoding=UTF8 --no-instructions >"$cluster/initdb.log" 2>&1 \
  || { cat "$cluster/initdb.log" >&2; exit 1; }

# A port counts as free when nothing answers on it; pg_ctl fails if another process takes it
# first, and the loop then tries the next one.
started=
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 20000))
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    continue
  fi
  if "${as_owner[@]}" "$bindir/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$cluster -c max_connections=300 -c fsync=off" \
      start >/dev/null; then
    started=1
    break
  fi
done
if [ -z "$started" ]; then
  echo "test-postgres: starting the cluster failed; its log follows" >&2
  cat "$cluster/server.log" >&2 || true
  exit 1
fi

export AEGIS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "test-postgres: cluster on 127.0.0.1:$port in $cluster"
"$@"

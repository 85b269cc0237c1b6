#!/usr/bin/env bash
# Runs a command against a throw-away PostgreSQL cluster: initdb into a temporary directory,
# start it on 127.0.0.1 at a free port with trust authentication, export
# AEGIS_TEST_DATABASE_URL, run the command, then stop the cluster and delete it.
#
# With openssl installed, the cluster also accepts TLS (ssl=on) with a certificate for
# `localhost` signed by a throw-away CA, and the script exports AEGIS_TEST_DATABASE_CA (that
# CA) and AEGIS_TEST_DATABASE_OTHER_CA (an unrelated CA) for the TLS tests. Plain connections
# keep working.
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

# Certificates for the TLS tests, valid for two days: the cluster and they are deleted at exit.
tls_options=
if command -v openssl >/dev/null; then
  tls="$cluster/tls"
  mkdir -p "$tls"
  make_ca() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$2" -keyout "$tls/$1.key" -out "$tls/$1.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  }
  make_ca ca "aegis test CA" && make_ca other-ca "aegis unrelated CA" \
    && openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null \
    && printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext" \
    && openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
      -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null \
    || { echo "test-postgres: creating the TLS certificates with openssl failed" >&2; exit 1; }
  # PostgreSQL refuses a key file that others can read.
  chmod 600 "$tls/server.key"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres: "$tls"
    chmod 644 "$tls/ca.crt" "$tls/other-ca.crt"
  fi
  tls_options="-c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key"
  export AEGIS_TEST_DATABASE_CA="$tls/ca.crt" AEGIS_TEST_DATABASE_OTHER_CA="$tls/other-ca.crt"
else
  echo "test-postgres: openssl not found; the cluster runs without TLS and the TLS tests are skipped" >&2
fi

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
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$cluster -c max_connections=300 -c fsync=off $tls_options" \
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

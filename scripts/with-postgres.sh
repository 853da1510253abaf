#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL cluster, then stops and deletes the cluster,
# whatever the command's outcome (its exit status is this script's).
#
#   scripts/with-postgres.sh swift test --skip-build
#
# The cluster listens on 127.0.0.1 on a free port (password auth, scram-sha-256) and on a
# Unix socket in its own directory (trust, for the superuser helpers below). It runs as the
# unprivileged `postgres` user when started by root, as the caller otherwise. The command
# sees:
#   POOLD_TEST_PG_URL        postgres://poold@127.0.0.1:PORT/poold (role poold, not a superuser)
#   POOLD_TEST_PG_PASSWORD   that role's password
#   POOLD_TEST_PG_HOST/PORT  the address, POOLD_TEST_PG_SOCKET_DIR the socket directory
#   POOLD_TEST_PG_PSQL       a psql as superuser: `$POOLD_TEST_PG_PSQL -c 'SELECT 1'`
#   POOLD_TEST_PG_CTL        pg_ctl for this cluster: `$POOLD_TEST_PG_CTL restart -m fast`
#   POOLD_TEST_PGBENCH       pgbench as role poold over TCP: `$POOLD_TEST_PGBENCH -c 8 …`
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "with-postgres: no PostgreSQL server found (apt-get install -y postgresql)" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/poold-pg.XXXXXX)
chmod 0755 "$dir"
run_as=()
if [ "$(id -u)" -eq 0 ]; then
  id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
  chown postgres: "$dir"
  run_as=(runuser -u postgres --)
fi

stop_cluster() {
  local status=$?
  if [ -f "$dir/data/postmaster.pid" ]; then
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$dir/server.log" ]; then
    echo "with-postgres: last lines of the server log:" >&2
    tail -n 20 "$dir/server.log" >&2 || true
  fi
  rm -rf "$dir"
  exit "$status"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password="poold-test-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

"${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C --no-sync \
  --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
"${run_as[@]}" mkdir "$dir/sock"
cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 200
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null

cat >"$dir/psql" <<EOF
#!/bin/sh
exec ${run_as[*]} "$bin/psql" -h "$dir/sock" -p $port -U postgres -d poold -X -A -t -q -v ON_ERROR_STOP=1 "\$@"
EOF
cat >"$dir/pg_ctl" <<EOF
#!/bin/sh
exec ${run_as[*]} "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 "\$@"
EOF
cat >"$dir/pgbench" <<EOF
#!/bin/sh
PGPASSWORD='$password' exec "$bin/pgbench" -h 127.0.0.1 -p $port -U poold "\$@" poold
EOF
chmod 0755 "$dir/psql" "$dir/pg_ctl" "$dir/pgbench"

"$dir/psql" -d postgres -c "CREATE ROLE poold LOGIN PASSWORD '$password'" -c "CREATE DATABASE poold OWNER poold"

export POOLD_TEST_PG_URL="postgres://poold@127.0.0.1:$port/poold"
export POOLD_TEST_PG_PASSWORD="$password"
export POOLD_TEST_PG_HOST=127.0.0.1
export POOLD_TEST_PG_PORT=$port
export POOLD_TEST_PG_SOCKET_DIR="$dir/sock"
export POOLD_TEST_PG_PSQL="$dir/psql"
export POOLD_TEST_PG_CTL="$dir/pg_ctl"
export POOLD_TEST_PGBENCH="$dir/pgbench"
echo "with-postgres: PostgreSQL $("$dir/psql" -c 'SHOW server_version') on 127.0.0.1:$port ($dir)"

"$@"

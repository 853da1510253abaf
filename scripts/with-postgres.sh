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
#   POOLD_TEST_PG_TLS_PORT   a second cluster, the same roles and database, with TLS on (ssl = on,
#                            a server certificate for localhost only); the first one has
#                            no TLS, which most tests rely on
#   POOLD_TEST_PG_TLS_CA     the throwaway CA that signed that certificate
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
  for data in "$dir/data" "$dir/data-tls"; do
    if [ -f "$data/postmaster.pid" ]; then
      "${run_as[@]}" "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
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
# The TLS cluster: a copy made before either starts, on its own port and socket directory, with
# a throwaway CA's certificate for localhost and 127.0.0.1.
tls_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${run_as[@]}" cp -a "$dir/data" "$dir/data-tls"
"${run_as[@]}" mkdir "$dir/sock-tls"
mkdir "$dir/tls"
(
  cd "$dir/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 \
    -subj "/CN=poold test CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
    -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\n' > ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext 2>/dev/null
)
chmod 0755 "$dir/tls"
chmod 0644 "$dir/tls/ca.crt"
install -m 0600 "$dir/tls/server.key" "$dir/data-tls/server.key"
install -m 0644 "$dir/tls/server.crt" "$dir/data-tls/server.crt"
chown --reference="$dir/data-tls" "$dir/data-tls/server.key" "$dir/data-tls/server.crt"
printf "port = %s\nunix_socket_directories = '%s'\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" \
  "$tls_port" "$dir/sock-tls" | "${run_as[@]}" tee -a "$dir/data-tls/postgresql.conf" >/dev/null
"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null
"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data-tls" -l "$dir/server-tls.log" -w -t 30 start >/dev/null

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
"${run_as[@]}" "$bin/psql" -h "$dir/sock-tls" -p "$tls_port" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE poold LOGIN PASSWORD '$password'" -c "CREATE DATABASE poold OWNER poold"

export POOLD_TEST_PG_URL="postgres://poold@127.0.0.1:$port/poold"
export POOLD_TEST_PG_PASSWORD="$password"
export POOLD_TEST_PG_HOST=127.0.0.1
export POOLD_TEST_PG_PORT=$port
export POOLD_TEST_PG_SOCKET_DIR="$dir/sock"
export POOLD_TEST_PG_PSQL="$dir/psql"
export POOLD_TEST_PG_CTL="$dir/pg_ctl"
export POOLD_TEST_PGBENCH="$dir/pgbench"
export POOLD_TEST_PG_TLS_PORT=$tls_port
export POOLD_TEST_PG_TLS_CA="$dir/tls/ca.crt"
echo "with-postgres: PostgreSQL $("$dir/psql" -c 'SHOW server_version') on 127.0.0.1:$port ($dir)"

"$@"

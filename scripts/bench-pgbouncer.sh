#!/usr/bin/env bash
# PgBouncer beside poold in `make bench-daemon`: Debian's pgbouncer, installed here (and only
# here: `make test` never needs it) when its binary is missing, run as a child of the benchmark
# with a config of its own in the benchmark's scratch directory (never /etc/pgbouncer, never the
# packaged service), in front of the throwaway cluster of scripts/with-postgres.sh:
# transaction pooling, 8 server connections, like poold's pool "pg". pgbench -M simple talks to
# it; p50 and p99 come from pgbench's per-transaction log (-l), in microseconds.
#
# scripts/bench-daemon.sh sources this file for its functions. Run alone, it measures PgBouncer
# on the benchmark's two fast workloads and nothing else (no poold needed):
#
#   DURATION=3 scripts/with-postgres.sh scripts/bench-pgbouncer.sh
#
# Functions (they use WORK, DURATION and the POOLD_TEST_PG_* variables):
#   pgbouncer_ensure        install Debian's pgbouncer if its binary is missing
#   pgbouncer_start [unix]  start it on 127.0.0.1 on a free port (PGBOUNCER_PORT), pid PGBOUNCER_PID;
#                           with "unix", it reaches the server over the cluster's Unix socket, and
#                           pgbench reaches it over its own (PGB_HOST)
#   pgbouncer_stop          stop it, by that pid (for a cleanup trap too: a no-op when not running)
#   pgbouncer_bench NAME SCRIPT
#                           pgbench -n -M simple -c 64 -j 2 -T DURATION -f SCRIPT through it; sets
#                           PGB_TPS, PGB_LAT (average, ms), PGB_P50 and PGB_P99 (us), PGB_FAILED

PGBOUNCER_PID=
PGBOUNCER_PORT=
PGBOUNCER_BIN=
PGB_CLIENTS=64
PGB_HOST=127.0.0.1

pgbouncer_ensure() {
  PGBOUNCER_BIN=$(command -v pgbouncer || true)
  [ -n "$PGBOUNCER_BIN" ] || [ ! -x /usr/sbin/pgbouncer ] || PGBOUNCER_BIN=/usr/sbin/pgbouncer
  if [ -z "$PGBOUNCER_BIN" ]; then
    # The packaged service is not started: the installer's policy (policy-rc.d) or the absence
    # of systemd as PID 1 keeps it off here, and nothing below uses /etc/pgbouncer.
    "$(dirname "${BASH_SOURCE[0]}")/ensure-packages.sh" pgbouncer
    PGBOUNCER_BIN=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  fi
  [ -x "$PGBOUNCER_BIN" ] || { echo "bench-pgbouncer: no pgbouncer binary after installing it" >&2; return 1; }
}

# The same pgbench as scripts/with-postgres.sh's (the newest server's), called directly so that
# it can point at PgBouncer.
pgbouncer_pgbench_bin() {
  local bin
  bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [ -x "$bin/pgbench" ]; then echo "$bin/pgbench"; else command -v pgbench; fi
}

# shellcheck disable=SC2120  # bench-daemon.sh passes "unix"
pgbouncer_start() {
  : "${WORK:?}" "${POOLD_TEST_PG_PORT:?}" "${POOLD_TEST_PG_PASSWORD:?}"
  [ -n "$PGBOUNCER_BIN" ] || pgbouncer_ensure
  local dir=$WORK/pgbouncer run_as=() server="host=127.0.0.1"
  PGB_HOST=127.0.0.1
  if [ "${1:-}" = unix ]; then
    server="host=${POOLD_TEST_PG_SOCKET_DIR:?}"
    PGB_HOST=$dir
  fi
  mkdir -p "$dir"
  # PgBouncer refuses to run as root: run it as the cluster does (scripts/with-postgres.sh), as
  # postgres when we are root. setpriv execs it, so $! is PgBouncer's own pid.
  if [ "$(id -u)" -eq 0 ]; then
    chmod 0711 "$WORK"  # postgres reaches its own directory; the rest of WORK stays unreadable
    run_as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  PGBOUNCER_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Clients authenticate as the cluster does (SCRAM), against the password in the auth file,
  # which PgBouncer also uses to log in to the server as role poold.
  (umask 077 && printf '"poold" "%s"\n' "${POOLD_TEST_PG_PASSWORD//\"/\"\"}" > "$dir/userlist.txt")
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
poold = $server port=$POOLD_TEST_PG_PORT dbname=poold user=poold

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $dir
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 8
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,application_name
server_tls_sslmode = disable
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
INI
  if [ ${#run_as[@]} -gt 0 ]; then chown -R postgres: "$dir"; fi
  chmod 0700 "$dir"
  "${run_as[@]}" "$PGBOUNCER_BIN" "$dir/pgbouncer.ini" > "$dir/stdout.log" 2>&1 &
  PGBOUNCER_PID=$!
  local _
  for _ in $(seq 100); do
    if ! kill -0 "$PGBOUNCER_PID" 2>/dev/null; then
      echo "bench-pgbouncer: pgbouncer exited at start:" >&2
      cat "$dir/stdout.log" "$dir/pgbouncer.log" >&2 2>/dev/null || true
      PGBOUNCER_PID=
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PGBOUNCER_PORT") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench-pgbouncer: pgbouncer not listening on 127.0.0.1:$PGBOUNCER_PORT after 5 s" >&2
  pgbouncer_stop
  return 1
}

# SIGINT: PgBouncer's safe shutdown (its clients are gone by now); SIGKILL if it is still
# there after 5 s. Only the pid we started is signalled.
pgbouncer_stop() {
  [ -n "$PGBOUNCER_PID" ] || return 0
  local pid=$PGBOUNCER_PID _
  PGBOUNCER_PID=
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

pgbouncer_bench() {
  local script=$2 out=$WORK/$1.pgbouncer prefix=$WORK/$1.pgbouncer-log pgbench
  pgbench=$(pgbouncer_pgbench_bin)
  rm -f "$prefix".*
  PGB_TPS='' PGB_LAT='' PGB_P50='' PGB_P99='' PGB_FAILED=''
  PGPASSWORD=$POOLD_TEST_PG_PASSWORD "$pgbench" -h "$PGB_HOST" -p "$PGBOUNCER_PORT" -U poold \
    -n -M simple -c "$PGB_CLIENTS" -j 2 -T "$DURATION" -f "$script" -l --log-prefix="$prefix" poold > "$out" 2>&1 \
    || { cat "$out"; echo "pgbench through PgBouncer failed" >&2; return 1; }
  grep -E '^(number of (transactions actually processed|failed transactions)|latency|tps)' "$out" | sed 's/^/   /'
  PGB_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out")
  PGB_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out")
  PGB_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  # The log's third field is each transaction's latency in microseconds ("failed" or "skipped"
  # for those that did not complete). Nearest-rank percentiles over every completed one.
  cat "$prefix".* | awk '$3 ~ /^[0-9]+$/ { print $3 }' | sort -n > "$prefix.sorted"
  local n
  n=$(wc -l < "$prefix.sorted")
  read -r PGB_P50 PGB_P99 < <(awk -v n="$n" '
    BEGIN { i50 = int((n * 50 + 99) / 100); i99 = int((n * 99 + 99) / 100); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1 }
    NR == i50 { p50 = $1 } NR == i99 { p99 = $1 }
    END { printf "%s %s\n", (p50 == "" ? "?" : p50), (p99 == "" ? "?" : p99) }' "$prefix.sorted")
  echo "   latency from the per-transaction log ($n transactions): p50 $PGB_P50 us, p99 $PGB_P99 us"
  rm -f "$prefix".*
}

# Run alone: PgBouncer on workloads a and b of bench-daemon.sh, without poold.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  DURATION=${DURATION:-5}
  : "${POOLD_TEST_PG_URL:?run under scripts/with-postgres.sh}"
  WORK=$(mktemp -d /tmp/poold-bench-pgbouncer-XXXXXX)
  trap 'pgbouncer_stop; rm -rf "$WORK"' EXIT
  pgbouncer_ensure
  $POOLD_TEST_PG_PSQL -c "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text NOT NULL)" \
    -c "INSERT INTO kv SELECT g, 'value-' || g FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING" \
    -c "GRANT ALL ON kv TO poold" -c "ANALYZE kv"
  printf '\\set k random(1, 10000)\nSELECT :k::int + 1;\n' > "$WORK/a.sql"
  printf '\\set k random(1, 10000)\nSELECT v FROM kv WHERE k = :k;\n' > "$WORK/b.sql"
  echo "== $("$PGBOUNCER_BIN" --version | head -n 1), pool_mode transaction, default_pool_size 8"
  for w in a b; do
    echo "-- PG $w: pgbench -n -M simple -c $PGB_CLIENTS -j 2 -T $DURATION -f $w.sql through PgBouncer:"
    sed 's/^/     /' "$WORK/$w.sql"
    pgbouncer_start
    pgbouncer_bench "$w" "$WORK/$w.sql"
    pgbouncer_stop
    echo "-> $w: PgBouncer ${PGB_TPS:-?} tps (latency average ${PGB_LAT:-?} ms), p50 $PGB_P50 us, p99 $PGB_P99 us, ${PGB_FAILED:-?} failed"
  done
fi

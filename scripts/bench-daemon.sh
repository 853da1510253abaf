#!/usr/bin/env bash
# make bench-daemon: loadgen (../shared/tools/loadgen.c) against a release poold, on this machine,
# in one run. SQLite pool: req/s and latency percentiles for ping and for a point read from a
# 10k-row table, idle RSS. PostgreSQL pool (run under scripts/with-postgres.sh): three workloads,
# each first with pgbench straight against the cluster (the upper bound), then (the two fast
# ones) with pgbench -M simple through PgBouncer in transaction mode, 8 server connections like
# poold's pool (scripts/bench-pgbouncer.sh, which installs Debian's pgbouncer when it is
# missing), then with loadgen through poold, reported as ratios. Then how long SIGTERM took, and
# whether poold left connections behind in pg_stat_activity.
#
#   scripts/with-postgres.sh scripts/bench-daemon.sh       # what `make bench-daemon` runs
#   SCRATCH=.build-bench DURATION=5 scripts/with-postgres.sh scripts/bench-daemon.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
DURATION=${DURATION:-5}
SCRATCH=${SCRATCH:-.build}
: "${POOLD_TEST_PG_URL:?run under scripts/with-postgres.sh (make bench-daemon does)}"
BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
# shellcheck source=scripts/bench-pgbouncer.sh
. scripts/bench-pgbouncer.sh
pgbouncer_ensure
WORK=$(mktemp -d /tmp/poold-bench-XXXXXX)
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID"; fi
  pgbouncer_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

gcc -O2 -o "$WORK/loadgen" "$SHARED/tools/loadgen.c"
sqlite3 "$WORK/bench.db" "PRAGMA journal_mode=WAL; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
  INSERT INTO kv SELECT x, 'value-' || x FROM c;" >/dev/null

# The same 10k-row table in PostgreSQL, readable by role poold (the psql helper is the superuser).
$POOLD_TEST_PG_PSQL -c "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL)" \
  -c "INSERT INTO kv SELECT g, 'value-' || g FROM generate_series(1, 10000) g" \
  -c "GRANT ALL ON kv TO poold" -c "ANALYZE kv"
(umask 077 && printf '%s\n' "$POOLD_TEST_PG_PASSWORD" > "$WORK/pg.password")

cat > "$WORK/poold.toml" <<TOML
[daemon]
control_socket = "$WORK/control.sock"
shutdown_grace = "5s"

[[pool]]
name = "main"
kind = "sqlite"
path = "$WORK/bench.db"
min = 4
max = 4
allow_adhoc = true

[[pool]]
name = "pg"
kind = "postgres"
url = "$POOLD_TEST_PG_URL"
password_file = "$WORK/pg.password"
min = 8
max = 8
max_waiters = 4096
allow_adhoc = true

[[pool]]
name = "pgu"
kind = "postgres"
url = "postgres://poold@$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$POOLD_TEST_PG_SOCKET_DIR"):$POOLD_TEST_PG_PORT/poold"
min = 8
max = 8
max_waiters = 4096
allow_adhoc = true

[[pool]]
name = "workers"
kind = "exec"
command = ["/usr/bin/python3", "$PWD/Tests/workers/echo.py"]
min = 4
max = 4
allow_adhoc = true
TOML

# Job log lines go to stderr at info; under systemd they go to the journal instead.
POOLD_LOG_LEVEL=${POOLD_LOG_LEVEL:-warning} "$BIN/poold" --config "$WORK/poold.toml" 2>"$WORK/poold.log" &
PID=$!
for _ in $(seq 200); do [ -S "$WORK/control.sock" ] && break; sleep 0.05; done
sleep 0.5
echo "== idle RSS: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status) (target < 40 MB)"

# json_num FIELD FILE: a number from loadgen's JSON summary (the last line of its output).
json_num() { tail -1 "$2" | sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p"; }
# cpu_ticks: poold's user + system CPU so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
ticks=$(getconf CLK_TCK)

echo "== ping: 8 conns, depth 16 (target >= 100k req/s, p99 < 5 ms)"
"$WORK/loadgen" --socket "$WORK/control.sock" --conns 8 --depth 16 --duration "$DURATION" --warmup 1 \
  --payload '{"op":"ping"}' | tee "$WORK/ping.out"

echo "== SQLite point read: 16 conns, depth 4, pool max 4 (target >= 25% of the ping throughput above, p99 < 5 ms)"
cpu_before=$(cpu_ticks)
"$WORK/loadgen" --socket "$WORK/control.sock" --conns 16 --depth 4 --duration "$DURATION" --warmup 1 \
  --payload '{"op":"run","pool":"main","sql":"SELECT v FROM kv WHERE k = ?1","params":[@R@]}' --rand-max 10000 \
  | tee "$WORK/read.out"
cpu_after=$(cpu_ticks)
answers=$(json_num sent "$WORK/read.out")  # warm-up included, like the CPU
# CPU per request is steadier than req/s on a shared machine: it does not depend on what else runs.
echo "== poold CPU per point read: $(( (cpu_after - cpu_before) * 1000000 / ticks / answers )) us ($(( cpu_after - cpu_before )) ticks for $answers requests)"
awk -v read="$(json_num ok_rps "$WORK/read.out")" -v ping="$(json_num ok_rps "$WORK/ping.out")" -v p99="$(json_num p99_us "$WORK/read.out")" 'BEGIN {
  pct = ping > 0 ? 100 * read / ping : 0
  printf "-> SQLite point reads: %.0f req/s = %.1f%% of ping (%.0f req/s) in this run, p99 %.0f us (target >= 25%%, p99 < 5 ms): %s\n",
    read, pct, ping, p99, (pct >= 25 && p99 < 5000) ? "met" : "NOT met" }'

echo "== RSS after load: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status)"

# ---- PostgreSQL: pgbench straight against the cluster, then pgbench through PgBouncer (transaction
# mode, 8 server connections), then loadgen through poold (pool "pg", 8 connections).
# pg_workload NAME TARGET_PCT PGBOUNCER PGBENCH_SCRIPT PGBENCH_ARGS LOADGEN_ARGS...
#   PGBOUNCER is "pgbouncer" to run PgBouncer too (the p99 target is then PgBouncer's p99), "-"
#   not to (the p99 target is then 10 ms). PGBENCH_ARGS is split on spaces; LOADGEN_ARGS are
#   passed as they are.
pg_workload() {
  local name=$1 target_pct=$2 bouncer=$3 script=$4 pgbench_args=$5
  shift 5
  echo "-- pgbench $pgbench_args -T $DURATION -f $name.sql:"
  sed 's/^/     /' "$script"
  # shellcheck disable=SC2086  # pgbench_args is a list of options
  $POOLD_TEST_PGBENCH $pgbench_args -T "$DURATION" -f "$script" > "$WORK/$name.pgbench" 2>&1 \
    || { cat "$WORK/$name.pgbench"; echo "pgbench failed" >&2; return 1; }
  grep -E '^(number of (transactions actually processed|failed transactions)|latency|tps)' "$WORK/$name.pgbench" | sed 's/^/   /'
  PGB_TPS='' PGB_LAT='' PGB_P50='' PGB_P99='' PGB_FAILED=''
  if [ "$bouncer" != - ]; then
    echo "-- pgbench -n -M simple -c $PGB_CLIENTS -j 2 -T $DURATION -f $name.sql through PgBouncer (pool_mode transaction, default_pool_size 8):"
    if [ "$bouncer" = pgbouncer-unix ]; then pgbouncer_start unix; else pgbouncer_start; fi
    pgbouncer_bench "$name" "$script"
    pgbouncer_stop
  fi
  echo "-- loadgen through poold:"
  "$WORK/loadgen" --socket "$WORK/control.sock" --duration "$DURATION" --warmup 1 --label "pg-$name" "$@" \
    | tee "$WORK/$name.loadgen"
  local tps lat rps p50 p99 err pct verdict
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$WORK/$name.pgbench")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$WORK/$name.pgbench")
  rps=$(json_num ok_rps "$WORK/$name.loadgen")
  p50=$(json_num p50_us "$WORK/$name.loadgen")
  p99=$(json_num p99_us "$WORK/$name.loadgen")
  err=$(json_num err "$WORK/$name.loadgen")
  pct=$(awk -v a="${rps:-0}" -v b="${tps:-0}" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "n/a" }')
  # The p99 bound: at most PgBouncer's p99 in this run where it ran, under 10 ms otherwise.
  local p99_max=9999.999 p99_target="p99 < 10 ms"
  if [ "$bouncer" != - ]; then p99_max=${PGB_P99:-0} p99_target="p99 <= PgBouncer's ${PGB_P99:-?} us"; fi
  verdict=$(awk -v pct="$pct" -v t="$target_pct" -v p99="${p99:-0}" -v err="${err:-1}" -v rps="${rps:-0}" -v max="$p99_max" \
    'BEGIN { print (pct != "n/a" && rps > 0 && pct + 0 >= t && p99 + 0 <= max + 0 && err + 0 == 0) ? "met" : "NOT met" }')
  printf -- '-> %s: pgbench %s tps (latency average %s ms) | poold %s ok req/s, p50 %s us, p99 %s us, %s errors | poold = %s%% of pgbench (target >= %s%%, %s): %s\n' \
    "$name" "${tps:-?}" "${lat:-n/a}" "${rps:-?}" "${p50:-?}" "${p99:-?}" "${err:-?}" "$pct" "$target_pct" "$p99_target" "$verdict"
  if [ "$bouncer" != - ]; then
    awk -v name="$name" -v rps="${rps:-0}" -v btps="${PGB_TPS:-0}" -v blat="${PGB_LAT:-n/a}" -v bp50="${PGB_P50:-?}" \
      -v bp99="${PGB_P99:-?}" -v bfail="${PGB_FAILED:-?}" -v p99="${p99:-?}" -v err="${err:-1}" 'BEGIN {
      ratio = btps > 0 ? rps / btps : 0
      printf "-> %s vs PgBouncer: PgBouncer %.0f tps (latency average %s ms, p50 %s us, p99 %s us, %s failed) | poold = %.2fx PgBouncer (target >= 1.2x): %s | p99 poold %s us vs PgBouncer %s us (target <=): %s\n",
        name, btps, blat, bp50, bp99, bfail, ratio, (btps > 0 && ratio >= 1.2 && err + 0 == 0) ? "met" : "NOT met",
        p99, bp99, (p99 ~ /^[0-9.]+$/ && bp99 ~ /^[0-9.]+$/ && p99 + 0 > 0 && p99 + 0 <= bp99 + 0) ? "met" : "NOT met" }'
  fi
}

printf '\\set k random(1, 10000)\nSELECT :k::int + 1;\n' > "$WORK/a.sql"
printf '\\set k random(1, 10000)\nSELECT v FROM kv WHERE k = :k;\n' > "$WORK/b.sql"
printf 'SELECT pg_sleep(0.002);\n' > "$WORK/c.sql"

echo "== PG a: SELECT \$1::int + 1; pgbench 8 clients prepared vs PgBouncer (pgbench 64 clients simple, pool 8) vs poold 64 conns depth 1, pool max 8 (target: poold >= 60% of pgbench and >= 1.2x PgBouncer, p99 <= PgBouncer's)"
pg_workload a 60 pgbouncer "$WORK/a.sql" "-n -c 8 -j 2 -M prepared" --conns 64 --depth 1 \
  --payload '{"op":"run","pool":"pg","sql":"SELECT $1::int + 1","params":[@R@]}' --rand-max 10000

echo "== PG b: point read SELECT v FROM kv WHERE k = \$1; pgbench 8 clients prepared vs PgBouncer (pgbench 64 clients simple, pool 8) vs poold 8 conns depth 16, pool max 8 (target: poold >= 60% of pgbench and >= 1.2x PgBouncer, p99 <= PgBouncer's)"
cpu_before=$(awk '{print $14 + $15}' /proc/$PID/stat)
pg_workload b 60 pgbouncer "$WORK/b.sql" "-n -c 8 -j 2 -M prepared" --conns 8 --depth 16 \
  --payload '{"op":"run","pool":"pg","sql":"SELECT v FROM kv WHERE k = $1","params":[@R@]}' --rand-max 10000
cpu_after=$(awk '{print $14 + $15}' /proc/$PID/stat)

# The same workload a with every hop to the server over a Unix socket, as a pooler on the
# server's host is usually set up: pgbench direct and PgBouncer reach the cluster through its
# socket, pgbench reaches PgBouncer through PgBouncer's, and poold's pool "pgu" uses the socket
# (poold's clients always do). Over TCP loopback the sender's write also runs the receiver's
# side of the stack, which is most of a query's kernel time here.
echo "== PG a over Unix sockets: the same, every hop to the server on a Unix socket (pool pgu)"
pg_workload au 60 pgbouncer-unix "$WORK/a.sql" "-n -c 8 -j 2 -M prepared -h $POOLD_TEST_PG_SOCKET_DIR" --conns 64 --depth 1 \
  --payload '{"op":"run","pool":"pgu","sql":"SELECT $1::int + 1","params":[@R@]}' --rand-max 10000
# pgbench and PgBouncer ran first: poold's 8 idle connections cost it nothing then, so the ticks are loadgen's requests.
answers=$(json_num sent "$WORK/b.loadgen")  # warm-up included, like the CPU
echo "== poold CPU per PG point read: $(( (cpu_after - cpu_before) * 1000000 / ticks / answers )) us ($(( cpu_after - cpu_before )) ticks for $answers requests)"

echo "== PG c: 2 ms jobs SELECT pg_sleep(0.002); pgbench 8 clients vs poold 64 conns depth 1, pool max 8 (target: poold >= 97% of pgbench, p99 < 10 ms)"
pg_workload c 97 - "$WORK/c.sql" "-n -c 8 -j 2" --conns 64 --depth 1 \
  --payload '{"op":"run","pool":"pg","sql":"SELECT pg_sleep(0.002)"}'

# PostgresNIO with no daemon in front (Benchmarks/PostgresDirect): the ceiling for any pool on
# its PostgresConnection, in the same run. make bench-daemon builds it.
DIRECT=Benchmarks/.build/release/PostgresDirect
if [ -x "$DIRECT" ]; then
  echo "== PostgresNIO alone, 8 connections one query after another (no daemon; compare with pgbench above):"
  DURATION=$DURATION "$DIRECT" | sed 's/^/   /'
else
  echo "== PostgresNIO alone: not built (cd Benchmarks && swift build -c release --product PostgresDirect)"
fi

# poold's own client with no daemon in front (Benchmarks/WireClientBench): what the protocol
# costs by itself, client CPU per query, user and system apart.
WIRE=Benchmarks/.build/release/WireClientBench
if [ -x "$WIRE" ]; then
  echo "== poold's wire client alone, 8 connections one query after another (no daemon):"
  DURATION=$DURATION "$WIRE" | sed 's/^/   /'
else
  echo "== poold's wire client alone: not built (cd Benchmarks && swift build -c release --product WireClientBench)"
fi

echo "== RSS after PostgreSQL load: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status)"

# ---- exec pool: 4 Python echo workers (Tests/workers/echo.py).
gcc -O2 -o "$WORK/pipe-roundtrip" Benchmarks/tools/pipe-roundtrip.c
EXEC_PAYLOAD='{"op":"run","pool":"workers","input":{"n":@R@}}'
echo "== exec: 4 Python echo workers, loadgen 16 conns depth 1"
"$WORK/loadgen" --socket "$WORK/control.sock" --conns 16 --depth 1 --duration "$DURATION" --warmup 1 --label exec-16 \
  --payload "$EXEC_PAYLOAD" | tee "$WORK/exec16.out" | grep -E 'window|latency'
echo "== exec: one job after another, through poold vs a bare ping through poold plus a direct pipe to the same worker"
echo "   (target: poold's p50 <= bare-ping p50 + direct-pipe p50 + 30 us)"
cpu_before=$(cpu_ticks)
"$WORK/loadgen" --socket "$WORK/control.sock" --conns 1 --depth 1 --duration "$DURATION" --warmup 1 --label exec-1 \
  --payload "$EXEC_PAYLOAD" | tee "$WORK/exec1.out" | grep -E 'window|latency'
cpu_after=$(cpu_ticks)
answers=$(json_num sent "$WORK/exec1.out")
echo "   poold CPU per exec job (one at a time): $(( (cpu_after - cpu_before) * 1000000 / ticks / answers )) us ($(( cpu_after - cpu_before )) ticks for $answers jobs)"
"$WORK/pipe-roundtrip" --jobs 20000 -- /usr/bin/python3 Tests/workers/echo.py | tee "$WORK/pipe.out"
# The floor of any daemon in between: a bare ping, one at a time, over the same socket.
"$WORK/loadgen" --socket "$WORK/control.sock" --conns 1 --depth 1 --duration "$DURATION" --warmup 1 --label ping-1 \
  --payload '{"op":"ping"}' > "$WORK/ping1.out"
echo "   a bare ping one at a time through poold: p50 $(json_num p50_us "$WORK/ping1.out") us, p99 $(json_num p99_us "$WORK/ping1.out") us"
via=$(json_num p50_us "$WORK/exec1.out")
direct=$(sed -n 's/.*p50 \([0-9.]*\) us.*/\1/p' "$WORK/pipe.out")
ping1=$(json_num p50_us "$WORK/ping1.out")
awk -v via="${via:-0}" -v direct="${direct:-0}" -v ping="${ping1:-0}" 'BEGIN { bound = ping + direct + 30;
  printf "-> exec: poold p50 %.1f us; bare ping p50 %.1f us + direct pipe p50 %.1f us + 30 us = %.1f us (target: poold <= that): %s\n",
    via, ping, direct, bound, (via > 0 && direct > 0 && ping > 0 && via <= bound) ? "met" : "NOT met" }'
start=$(date +%s%N)
kill -TERM "$PID"
wait "$PID" || true
end=$(date +%s%N)
echo "== SIGTERM to exit: $(( (end - start) / 1000000 )) ms"
tail -1 "$WORK/poold.log"
left=$($POOLD_TEST_PG_PSQL -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'poold' AND application_name = 'poold'")
echo "== poold connections left in pg_stat_activity after exit: $left (expected 0)"
if [ "$left" != 0 ]; then
  sleep 1
  echo "   1 s later: $($POOLD_TEST_PG_PSQL -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'poold' AND application_name = 'poold'")"
fi
if grep -qiE 'error|critical' "$WORK/poold.log"; then
  echo "== poold log errors:"; grep -iE 'error|critical' "$WORK/poold.log" | tail -20
fi

# Limits under abuse, against this release poold: the AbuseTests suite (debug test build from
# `make test`, the daemon it starts is POOLD_BIN) with its fresh-client ping probe throughout.
echo "== limits under abuse (AbuseTests against the release poold; target: a fresh client's ping within 100 ms throughout)"
TEST_SCRATCH=${TEST_SCRATCH:-.build}
if POOLD_BIN="$BIN/poold" swift test --skip-build --scratch-path "$TEST_SCRATCH" --filter AbuseTests > "$WORK/abuse.out" 2>&1; then
  grep -E 'probe pings|SIGTERM with' "$WORK/abuse.out" | sed 's/^/   /'
  awk '/probe pings/ { for (i = 1; i < NF; i++) if ($i == "worst") { v = $(i + 1) + 0; if (v > worst) worst = v } }
       END { printf "-> worst fresh-client ping under abuse: %.1f ms (target < 100 ms): %s\n", worst, (worst < 100) ? "met" : "NOT met" }' "$WORK/abuse.out"
else
  echo "   the AbuseTests suite failed:"; grep -E '✘' "$WORK/abuse.out" | head -20
fi

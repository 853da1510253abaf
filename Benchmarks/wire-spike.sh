#!/usr/bin/env bash
# Issue 16, step 1: pgbench and the WireSpike client side by side, in one run, on the same
# Unix socket of the throwaway cluster (trust auth): queries/s and client CPU per query.
#
#   cd Benchmarks && swift build -c release --product WireSpike && ../scripts/with-postgres.sh ./wire-spike.sh
set -euo pipefail
cd "$(dirname "$0")"
: "${POOLD_TEST_PG_SOCKET_DIR:?run under ../scripts/with-postgres.sh}"
DURATION=${DURATION:-5}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d /tmp/wire-spike-XXXXXX)
trap 'rm -rf "$work"' EXIT
$POOLD_TEST_PG_PSQL -q -c "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text NOT NULL)" \
  -c "INSERT INTO kv SELECT g, 'value-' || g FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING" \
  -c "GRANT ALL ON kv TO poold" -c "ANALYZE kv"
printf '\\set k random(1, 10000)\nSELECT :k::int + 1;\n' > "$work/a.sql"
printf '\\set k random(1, 10000)\nSELECT v FROM kv WHERE k = :k;\n' > "$work/b.sql"
for w in a b; do
  echo "== pgbench -M prepared -c 8 -j 2 over the Unix socket: $(sed -n 2p "$work/$w.sql")"
  /usr/bin/time -f "%U %S" -o "$work/time" "$bin/pgbench" -h "$POOLD_TEST_PG_SOCKET_DIR" -p "$POOLD_TEST_PG_PORT" -U poold \
    -n -c 8 -j 2 -M prepared -T "$DURATION" -f "$work/$w.sql" poold > "$work/out" 2>&1
  n=$(sed -n 's/number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/out")
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/out")
  read -r u s < "$work/time"
  awk -v n="$n" -v u="$u" -v s="$s" -v tps="$tps" 'BEGIN { printf "   %d tps; pgbench CPU per query %.1f us (user %.1f, system %.1f)\n",
    tps, (u + s) * 1e6 / n, u * 1e6 / n, s * 1e6 / n }'
done
echo "== WireSpike, 8 connections, one query after another, over the Unix socket"
DURATION=$DURATION .build/release/WireSpike | sed 's/^/   /'
# The same over TCP: role poold gets in by trust from 127.0.0.1 for this (the spike speaks no
# SCRAM), in this throwaway cluster only.
hba=$($POOLD_TEST_PG_PSQL -Atc "SHOW hba_file")
sed -i '1i host poold poold 127.0.0.1/32 trust' "$hba"
$POOLD_TEST_PG_PSQL -qc "SELECT pg_reload_conf()" > /dev/null
echo "== pgbench -M prepared -c 8 -j 2 over TCP: $(sed -n 2p "$work/a.sql")"
/usr/bin/time -f "%U %S" -o "$work/time" "$bin/pgbench" -h 127.0.0.1 -p "$POOLD_TEST_PG_PORT" -U poold \
  -n -c 8 -j 2 -M prepared -T "$DURATION" -f "$work/a.sql" poold > "$work/out" 2>&1
n=$(sed -n 's/number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/out")
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/out")
read -r u s < "$work/time"
awk -v n="$n" -v u="$u" -v s="$s" -v tps="$tps" 'BEGIN { printf "   %d tps; pgbench CPU per query %.1f us (user %.1f, system %.1f)\n",
  tps, (u + s) * 1e6 / n, u * 1e6 / n, s * 1e6 / n }'
echo "== WireSpike over TCP"
WIRE_TCP=1 DURATION=$DURATION .build/release/WireSpike | sed 's/^/   /'
if [ -x .build/release/WireClientBench ]; then
  echo "== PostgresWire's WireClient, the real client (cd Benchmarks && swift build -c release --product WireClientBench)"
  DURATION=$DURATION .build/release/WireClientBench | sed 's/^/   /'
fi
if [ -x .build/release/PostgresDirect ]; then
  echo "== PostgresNIO (PostgresDirect), 8 connections, one query after another, over TCP with SCRAM"
  DURATION=$DURATION .build/release/PostgresDirect | sed 's/^/   /'
fi

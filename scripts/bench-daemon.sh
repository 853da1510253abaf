#!/usr/bin/env bash
# make bench-daemon: loadgen (../shared/tools/loadgen.c) against a release poold with a SQLite
# pool, on this machine, in one run. Reports req/s and latency percentiles for ping and for a
# point read from a 10k-row table, idle RSS, and how long SIGTERM took.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
DURATION=${DURATION:-5}
BIN=$(swift build -c release --show-bin-path)
WORK=$(mktemp -d /tmp/poold-bench-XXXXXX)
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

gcc -O2 -o "$WORK/loadgen" "$SHARED/tools/loadgen.c"
sqlite3 "$WORK/bench.db" "PRAGMA journal_mode=WAL; CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
  INSERT INTO kv SELECT x, 'value-' || x FROM c;" >/dev/null

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
TOML

# Job log lines go to stderr at info; under systemd they go to the journal instead.
POOLD_LOG_LEVEL=${POOLD_LOG_LEVEL:-warning} "$BIN/poold" --config "$WORK/poold.toml" 2>"$WORK/poold.log" &
PID=$!
for _ in $(seq 200); do [ -S "$WORK/control.sock" ] && break; sleep 0.05; done
sleep 0.5
echo "== idle RSS: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status) (target < 40 MB)"

echo "== ping: 8 conns, depth 16 (target >= 100k req/s, p99 < 5 ms)"
"$WORK/loadgen" --socket "$WORK/control.sock" --conns 8 --depth 16 --duration "$DURATION" --warmup 1 \
  --payload '{"op":"ping"}'

echo "== SQLite point read: 16 conns, depth 4, pool max 4 (target >= 40k req/s, p99 < 5 ms)"
cpu_before=$(awk '{print $14 + $15}' /proc/$PID/stat)
"$WORK/loadgen" --socket "$WORK/control.sock" --conns 16 --depth 4 --duration "$DURATION" --warmup 1 \
  --payload '{"op":"run","pool":"main","sql":"SELECT v FROM kv WHERE k = ?1","params":[@R@]}' --rand-max 10000 \
  | tee "$WORK/read.out"
cpu_after=$(awk '{print $14 + $15}' /proc/$PID/stat)
answers=$(tail -1 "$WORK/read.out" | sed 's/.*"sent":\([0-9]*\).*/\1/')  # warm-up included, like the CPU
ticks=$(getconf CLK_TCK)
# CPU per request is steadier than req/s on a shared machine: it does not depend on what else runs.
echo "== poold CPU per point read: $(( (cpu_after - cpu_before) * 1000000 / ticks / answers )) us ($(( cpu_after - cpu_before )) ticks for $answers requests)"

echo "== RSS after load: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$PID/status)"
start=$(date +%s%N)
kill -TERM "$PID"
wait "$PID" || true
end=$(date +%s%N)
echo "== SIGTERM to exit: $(( (end - start) / 1000000 )) ms"
tail -1 "$WORK/poold.log"

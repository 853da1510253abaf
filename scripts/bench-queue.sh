#!/usr/bin/env bash
# make bench-queue (issue 18): poold's durable queues side by side with pgqueuer (Python, asyncpg) on the same
# throwaway cluster in the same run, one after the other, then a markdown table of both against the issue's
# targets with a met / NOT met verdict per row. Run under scripts/with-postgres.sh:
#
#   scripts/with-postgres.sh scripts/bench-queue.sh                                  # what `make bench-queue` runs
#   DURATION=4 STEADY_SECONDS=60 scripts/with-postgres.sh scripts/bench-queue.sh     # a quick look
#
# pgqueuer lives in a venv of its own (.build/bench-venv, created here when missing) so that nothing else in
# the project depends on it. poold must already be built in release (the Makefile target builds it; this script
# never builds): POOLD_BIN overrides the binary. DURATION (8) is each throughput and latency phase's length,
# STEADY_SECONDS (600) the steady 1k/s phase's. The two JSON reports are kept in .build/bench-queue/.
# Exit status: 0 when both benches ran (whatever the verdicts), 1 when either failed; the table is printed either way.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${POOLD_TEST_PG_URL:?run under scripts/with-postgres.sh (make bench-queue does)}"
export DURATION=${DURATION:-8} STEADY_SECONDS=${STEADY_SECONDS:-600}
VENV=.build/bench-venv
PGQUEUER_VERSION=1.6.0   # the version the issue measured ("pgqueuer 1.6")
OUT=.build/bench-queue
mkdir -p "$OUT"

# The venv: python3's venv module (Debian ships ensurepip apart, in python3-venv), then pgqueuer with its asyncpg
# extra (pgqueuer itself does not require asyncpg).
if ! "$VENV/bin/python" -c "import pgqueuer, asyncpg, sys; sys.exit(pgqueuer.__version__ != '$PGQUEUER_VERSION')" 2>/dev/null; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "bench-queue: python3 has no venv/ensurepip; installing python3-venv" >&2
    apt-get install -y python3-venv >&2
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "pgqueuer[asyncpg]==$PGQUEUER_VERSION" >&2
fi

if [ -z "${POOLD_BIN:-}" ]; then
  POOLD_BIN="$(${SWIFT:-swift} build -c release --show-bin-path)/poold"
fi
export POOLD_BIN

# Between the two benches: everything role poold owns in database poold goes (pgqueuer's tables, types and
# functions if its bench could not uninstall them, schema poold, bench_started), so that poold's bench starts
# on the database pgqueuer's started on.
reset_database() {
  "$POOLD_TEST_PG_PSQL" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'poold'" >/dev/null
  "$POOLD_TEST_PG_PSQL" -c "SET client_min_messages = warning" -c "DROP OWNED BY poold" -c "DROP TABLE IF EXISTS bench_started" \
    >/dev/null
}

echo "== pgqueuer $PGQUEUER_VERSION (DURATION=$DURATION s, STEADY_SECONDS=$STEADY_SECONDS s)" >&2
pgq_status=0
"$VENV/bin/python" Benchmarks/queue/pgqueuer_bench.py > "$OUT/pgqueuer.json" || pgq_status=$?
reset_database

echo "== poold ($POOLD_BIN)" >&2
poold_status=0
"$VENV/bin/python" Benchmarks/queue/poold_bench.py > "$OUT/poold.json" || poold_status=$?
reset_database

# The table. A bench that died before printing its JSON leaves an empty file: that column then says so.
python3 - "$OUT/poold.json" "$OUT/pgqueuer.json" "$poold_status" "$pgq_status" <<'PY'
import json, sys

def load(path, status):
    try:
        with open(path) as f:
            r = json.load(f)
    except (OSError, ValueError):
        r = {"error": f"no report (exit status {status}); see the output above"}
    if status != "0" and "error" not in r:
        r["error"] = f"exit status {status}"
    return r

poold, pgq = load(sys.argv[1], sys.argv[3]), load(sys.argv[2], sys.argv[4])
FAILED = "failed"

def get(r, *path):
    for k in path:
        if not isinstance(r, dict) or r.get(k) is None:
            return None
        r = r[k]
    return r

def rate(v):
    return FAILED if v is None else f"{v:,.0f}/s"

def msec(v):
    return FAILED if v is None else f"{v:.2f} ms"

def size(v):
    return "?" if v is None else f"{v / 1048576:.1f} MiB"

def verdict(ok, why=""):
    if ok is None:
        return "NOT met (no poold figure)"
    return ("met" if ok else "NOT met") + (f" ({why})" if why else "")

rows = []

# Completions. pgqueuer has no single "concurrency 8": the comparison uses one PgQueuer with its defaults (one
# process, one connection, batch_size 10, no limit); 8 PgQueuer instances in one process (its own benchmark's
# way to add dequeuers) and entrypoint concurrency_limit=8 are shown beside it.
p = get(poold, "completions", "jobs_per_s")
q = get(pgq, "completions_default", "jobs_per_s")
q8 = get(pgq, "completions_8managers", "jobs_per_s")
ql = get(pgq, "completions_limit8", "jobs_per_s")
ok = None if p is None or q is None else p >= 2 * q and p >= 7500
why = "" if p is None or q is None else f"{p / q:.2f}x pgqueuer's defaults" + (f", {p / q8:.2f}x its 8 instances" if q8 else "")
rows.append(("completions/s, concurrency 8, one host", "≥ 2× pgqueuer and ≥ 7.5k/s", rate(p),
             f"{rate(q)} (1 PgQueuer, defaults); {rate(q8)} (8 PgQueuer in 1 process); {rate(ql)} (concurrency_limit=8)",
             verdict(ok, why)))

# Enqueue: one connection sending one call at a time, and eight; the verdict takes poold's better one.
for label, key, target in (("enqueue batched (100 per call)", "enqueue_batch100", 30000), ("enqueue singly", "enqueue_single", 3500)):
    p1, p8 = get(poold, f"{key}_1client"), get(poold, f"{key}_8clients")
    q1, q8 = get(pgq, f"{key}_1client"), get(pgq, f"{key}_8clients")
    best = max((v for v in (p1, p8) if v is not None), default=None)
    rows.append((label, f"≥ {target / 1000:g}k/s", f"{rate(p1)} (1 conn); {rate(p8)} (8 conns)",
                 f"{rate(q1)} (1 conn); {rate(q8)} (8 conns)", verdict(None if best is None else best >= target)))

# Enqueue -> start latency, from the time.time() in the job's params to its start; "from due" adds any wait the
# client had before it could send (the pace's schedule), shown for both.
for label, key, target in (("enqueue→start p99 at 1k/s", "latency_1k", 3), ("enqueue→start p99 at 2k/s", "latency_2k", 10)):
    def cell(r):
        l = get(r, key)
        if l is None:
            return FAILED
        return (f"p99 {msec(l.get('p99_ms'))}, p50 {msec(l.get('p50_ms'))}; p99 from due {msec(l.get('p99_from_due_ms'))}; "
                f"{rate(l.get('achieved_per_s'))} achieved")
    p99 = get(poold, key, "p99_ms")
    rows.append((label, f"≤ {target} ms", cell(poold), cell(pgq), verdict(None if p99 is None else p99 <= target)))

# Killed host (poold) / killed worker process (pgqueuer).
def recovery_cell(rec, defaults_note=""):
    if rec is None:
        return FAILED
    return (f"{rec['seconds']} s" if rec.get("seconds") is not None else rec.get("text", ">120 s")) + defaults_note
secs = get(poold, "recovery", "seconds")
pq = get(pgq, "recovery_default")
pq_cell = recovery_cell(pq, f" (defaults: heartbeat_timeout {get(pq, 'heartbeat_timeout_s')} s)" if pq else "")
if get(pq, "seconds") is None and get(pgq, "recovery_heartbeat_5s"):
    pq_cell = f"never within 120 s with defaults; {recovery_cell(get(pgq, 'recovery_heartbeat_5s'))} with heartbeat_timeout=5s"
rows.append(("killed host's jobs restarted", "≤ 10 s", recovery_cell(get(poold, "recovery")), pq_cell,
             verdict(None if get(poold, "recovery") is None else secs is not None and secs <= 10)))

# Steady 1k/s: the last window against the first (a minute each, or a tenth of a shorter run).
def steady_cells(r):
    s = get(r, "steady")
    if s is None:
        return [FAILED] * 3
    f, l, b = s["first"], s["last"], s["table_bytes"]
    return [f"{rate(f['jobs_per_s'])} → {rate(l['jobs_per_s'])}", f"{msec(f['p99_ms'])} → {msec(l['p99_ms'])}",
            f"{size(b.get('start'))} → {size(b.get('after_first_window'))} → {size(b.get('end'))}"]
pcells, qcells = steady_cells(poold), steady_cells(pgq)
n = int(get(poold, "steady", "seconds") or get(pgq, "steady", "seconds") or 0)
w = get(poold, "steady", "window_s") or get(pgq, "steady", "window_s") or 0
ok_tp = ok_p99 = ok_size = None
if (ps := get(poold, "steady")) is not None:
    f, l, b = ps["first"], ps["last"], ps["table_bytes"]
    ok_tp = l["jobs_per_s"] >= 0.8 * f["jobs_per_s"]
    ok_p99 = None if f["p99_ms"] is None or l["p99_ms"] is None else l["p99_ms"] <= 1.2 * f["p99_ms"]
    # Flat: the end no more than 20% (or 1 MiB) above the size after the first window, once the table had filled.
    base = b.get("after_first_window") or b["start"]
    ok_size = b["end"] <= max(1.2 * base, base + 1048576)
label = f"steady 1k/s for {n} s, first vs last {w:g} s:"
rows.append((f"{label} throughput", "last within 20% of first", pcells[0], qcells[0], verdict(ok_tp)))
rows.append((f"{label} p99", "last within 20% of first", pcells[1], qcells[1], verdict(ok_p99)))
# pgqueuer deletes a finished job's row and logs it in pgqueuer_log: that table's growth is shown beside.
log_start, log_end = get(pgq, "steady", "table_bytes", "log_start"), get(pgq, "steady", "table_bytes", "log_end")
if log_end is not None:
    qcells[2] += f"; pgqueuer_log {size(log_start)} → {size(log_end)}"
rows.append(("queue table size (start → after first window → end)", "flat", pcells[2], qcells[2], verdict(ok_size)))

print()
server = poold.get("server_version") or pgq.get("server_version", "?")
duration = poold.get("duration_s") or pgq.get("duration_s")
print(f"## make bench-queue: poold vs pgqueuer {pgq.get('pgqueuer_version', '?')} (asyncpg {pgq.get('asyncpg_version', '?')}), "
      f"PostgreSQL {server}, DURATION={duration} s")
print()
print("| what | target | poold | pgqueuer | verdict |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(str(c) for c in r) + " |")
print()
for name, r in (("poold", poold), ("pgqueuer", pgq)):
    if r.get("error"):
        print(f"**{name}'s part failed:** {r['error']}")
        print()
PY

if [ "$poold_status" -ne 0 ] || [ "$pgq_status" -ne 0 ]; then
  echo "bench-queue: poold's bench exited $poold_status, pgqueuer's $pgq_status (reports in $OUT/)" >&2
  exit 1
fi

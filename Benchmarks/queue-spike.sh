#!/usr/bin/env bash
# Issue 18, step 1: can the queue's SQL shape reach the targets on this machine at all? pgbench
# straight against the throwaway cluster (fsync off), no poold in between: the ceiling for any
# runner built on this schema (queue/schema.sql).
#
#   cd Benchmarks && ../scripts/with-postgres.sh ./queue-spike.sh      (DURATION=10 by default)
set -euo pipefail
cd "$(dirname "$0")"
DURATION=${DURATION:-10}
: "${POOLD_TEST_PGBENCH:?run under scripts/with-postgres.sh}"
Q=queue
schema() { $POOLD_TEST_PG_PSQL -q -f "$Q/schema.sql" >/dev/null 2>&1; }
tps() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$1"; }
run() { # name clients script
  local mode=()
  if [ "${PIPE:-0}" = 1 ]; then mode=(-M prepared); fi
  $POOLD_TEST_PGBENCH -n "${mode[@]}" -c "$2" -j 2 -T "$DURATION" -f "$3" -r > "/tmp/queue-spike.$1" 2>&1 || { cat "/tmp/queue-spike.$1"; exit 1; }
}
fill() { # rows: available jobs for the workers to take
  $POOLD_TEST_PG_PSQL -q -c "INSERT INTO poold.jobs (queue, params) SELECT 'q', jsonb_build_array(g) FROM generate_series(1, $1) g" \
    -c "VACUUM ANALYZE poold.jobs" >/dev/null
}
count() { $POOLD_TEST_PG_PSQL -c "$1"; }

# work-batch.sql: fetch 8 jobs in one statement (the host's demand), then run each: its effect
# and its fenced completion in one transaction per job. work-batch-pipelined.sql: the same, each
# job's transaction pipelined (BEGIN, effect, completion and COMMIT in one write and one read;
# pgbench -M prepared). pgbench scripts have no loops, so they are written out here.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
batch_scripts() {
  tee "$WORK/work-batch.sql" < "$Q/fetch-8.sql" > "$WORK/work-batch-pipelined.sql"
  for j in 1 2 3 4 5 6 7 8; do
    job="BEGIN;
INSERT INTO poold.effects (job, v) VALUES (:j$j, 1);
UPDATE poold.jobs SET state = 'completed', finished_at = now() WHERE id = :j$j AND state = 'running' AND lease = :client_id;
COMMIT;"
    printf '%s\n' "$job" >> "$WORK/work-batch.sql"
    printf '\\startpipeline\n%s\n\\endpipeline\n' "$job" >> "$WORK/work-batch-pipelined.sql"
  done
}
batch_scripts

echo "== enqueue, one job per transaction, 8 clients"
schema; run one 8 "$Q/enqueue-one.sql"
echo "-> $(tps /tmp/queue-spike.one) jobs/s (target for poold: >= 3.5k/s; pgqueuer 2.6k/s)"

echo "== enqueue, 100 jobs per INSERT, 8 clients"
schema; run batch 8 "$Q/enqueue-batch.sql"
echo "-> $(awk -v t="$(tps /tmp/queue-spike.batch)" 'BEGIN { printf "%.0f", t * 100 }') jobs/s (target for poold: >= 30k/s; pgqueuer 24.8k/s)"

echo "== fetch 1 + (effect + fenced completion) per job, 8 clients"
schema; fill 600000; run work1 8 "$Q/work-one.sql"
echo "-> $(tps /tmp/queue-spike.work1) jobs/s completed (target for poold: >= 7.5k/s at concurrency 8; pgqueuer 3.75k/s)"
echo "   effects $(count 'SELECT count(*) FROM poold.effects'), completed $(count "SELECT count(*) FROM poold.jobs WHERE state = 'completed'"), left running $(count "SELECT count(*) FROM poold.jobs WHERE state = 'running'")"

echo "== fetch 8 in one statement, then (effect + fenced completion) per job, 8 clients"
schema; fill 900000; run work8 8 "$WORK/work-batch.sql"
echo "-> $(awk -v t="$(tps /tmp/queue-spike.work8)" 'BEGIN { printf "%.0f", t * 8 }') jobs/s completed"
echo "   effects $(count 'SELECT count(*) FROM poold.effects'), completed $(count "SELECT count(*) FROM poold.jobs WHERE state = 'completed'"), left running $(count "SELECT count(*) FROM poold.jobs WHERE state = 'running'")"
echo "   per-statement latencies (ms):"
sed -n '/statement latencies/,$p' /tmp/queue-spike.work8 | head -8 | sed 's/^/   /'
echo "== the same, prepared, each job's transaction pipelined (one round trip per job), 8 clients"
schema; fill 1500000; PIPE=1 run work8p 8 "$WORK/work-batch-pipelined.sql"
echo "-> $(awk -v t="$(tps /tmp/queue-spike.work8p)" 'BEGIN { printf "%.0f", t * 8 }') jobs/s completed"
echo "   effects $(count 'SELECT count(*) FROM poold.effects'), completed $(count "SELECT count(*) FROM poold.jobs WHERE state = 'completed'"), left running $(count "SELECT count(*) FROM poold.jobs WHERE state = 'running'")"

echo "== table after the work: $(count "SELECT pg_size_pretty(pg_total_relation_size('poold.jobs'))") for $(count 'SELECT count(*) FROM poold.jobs') rows"

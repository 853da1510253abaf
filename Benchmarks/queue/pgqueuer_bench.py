#!/usr/bin/env python3
"""make bench-queue, pgqueuer's half: the issue-18 measurements against pgqueuer (asyncpg), so that
poold's queues are compared with it on the same cluster in the same run (poold_bench.py is the other half).

    scripts/with-postgres.sh .build/bench-venv/bin/python Benchmarks/queue/pgqueuer_bench.py
    DURATION=4 STEADY_SECONDS=60 scripts/with-postgres.sh .build/bench-venv/bin/python Benchmarks/queue/pgqueuer_bench.py

It prints one JSON object of figures on stdout; progress goes to stderr. pgqueuer runs with its
defaults (PgQueuer over one asyncpg connection, batch_size 10, heartbeat_timeout 30 s, dequeue_timeout
30 s) except where a phase says otherwise. Each phase starts on a freshly installed schema
(uninstall + install), so that no phase inherits another's dead rows.

Workers are separate OS processes (this file run as `pgqueuer_bench.py worker ...`): the latency and
recovery figures need a consumer that is not the enqueuer, and the recovery one needs a process to
kill -9. A worker's handler records time.time() when it starts a job; it prints `ready` when it has
run its warm-up job, `start N ATTEMPTS TIME` for each long job, and writes its records to a file
when SIGTERM stops it.

Environment: POOLD_TEST_PG_URL and POOLD_TEST_PG_PASSWORD (from scripts/with-postgres.sh), DURATION
(seconds per throughput/latency phase, 8), STEADY_SECONDS (600), PREFILL (jobs queued before the
completion phase; max(50000, 20000 * DURATION)), RECOVERY_GIVE_UP (120).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import tempfile
import time
from datetime import timedelta

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries

ENV = os.environ
DURATION = float(ENV.get("DURATION", "8"))
STEADY_SECONDS = float(ENV.get("STEADY_SECONDS", "600"))
# Enough for DURATION at 20k/s, poold's bench's figure too, so that both drain the same backlog.
PREFILL = int(ENV.get("PREFILL", str(max(50_000, int(20_000 * DURATION)))))
GIVE_UP = float(ENV.get("RECOVERY_GIVE_UP", "120"))
SENDERS = 8  # connections the paced enqueuer spreads its calls over, so that one slow call does not hold the pace back
WARMUP = min(1.0, DURATION / 4)  # seconds at the start of a latency phase that are not counted (first statements, caches)
HERE = os.path.abspath(__file__)


def log(msg: str) -> None:
    print(f"pgqueuer-bench: {msg}", file=sys.stderr, flush=True)


async def connect() -> asyncpg.Connection:
    try:
        url, password = ENV["POOLD_TEST_PG_URL"], ENV["POOLD_TEST_PG_PASSWORD"]
    except KeyError:
        sys.exit("pgqueuer-bench: run under scripts/with-postgres.sh (POOLD_TEST_PG_URL is not set)")
    return await asyncpg.connect(dsn=url, password=password)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# ---------------------------------------------------------------------------------------------------
# The worker process.


async def worker_main(args: argparse.Namespace) -> None:
    records: list[tuple[int, float, float]] = []  # (n, enqueued, started) for the latency phases
    pgqs: list[PgQueuer] = []
    conns = []
    # --managers N: N PgQueuer instances (each its own connection) in this one process, the way pgqueuer's
    # own benchmark (tools/benchmark.py --dequeue N) gets concurrent dequeuers.
    for _ in range(args.managers):
        conn = await connect()
        conns.append(conn)
        pgq = PgQueuer(AsyncpgDriver(conn))
        pgqs.append(pgq)

        # The no-op job of the throughput and latency phases: payload "n,enqueued".
        @pgq.entrypoint("bench", concurrency_limit=args.concurrency_limit)
        async def bench(job: Job) -> None:
            if args.record:
                started = time.time()
                n, enqueued = job.payload.split(b",")
                records.append((int(n), float(enqueued), started))

        # The recovery phase's long job: say when it starts, then hold it for 60 s.
        @pgq.entrypoint("slow")
        async def slow(job: Job) -> None:
            print(f"start {int(job.payload)} {job.attempts} {time.time():.6f}", flush=True)
            await asyncio.sleep(60)

        # Each worker's own warm-up job: once it ran, this worker listens and dequeues.
        @pgq.entrypoint(f"warm-{args.tag}")
        async def warm(job: Job) -> None:
            print("ready", flush=True)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [p.shutdown.set() for p in pgqs])
    run_args = {}
    if args.heartbeat_timeout is not None:
        run_args["heartbeat_timeout"] = timedelta(seconds=args.heartbeat_timeout)
    await asyncio.gather(*(p.run(**run_args) for p in pgqs))
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(f"{n} {e:.6f} {s:.6f}\n" for n, e, s in records)
    for conn in conns:
        await conn.close()


class Worker:
    """A worker process, its stdout read line by line in the background."""

    def __init__(self, tag: str, *, managers: int = 1, concurrency_limit: int = 0, record: bool = False,
                 heartbeat_timeout: float | None = None):
        self.tag = tag
        self.args = ["worker", "--tag", tag, "--managers", str(managers), "--concurrency-limit", str(concurrency_limit)]
        self.out = None
        if record:
            fd, self.out = tempfile.mkstemp(prefix=f"pgqueuer-bench-{tag}-")
            os.close(fd)
            self.args += ["--record", "--out", self.out]
        if heartbeat_timeout is not None:
            self.args += ["--heartbeat-timeout", str(heartbeat_timeout)]
        self.ready = asyncio.Event()
        self.starts: dict[int, tuple[int, float]] = {}  # n -> (attempts, time) of `slow` jobs
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, queries: Queries) -> None:
        self.proc = await asyncio.create_subprocess_exec(sys.executable, HERE, *self.args, stdout=asyncio.subprocess.PIPE)
        self.reader = asyncio.create_task(self._read())
        # Priority 1: dequeue takes the highest priority first, so the warm-up job does not wait behind a backlog.
        await queries.enqueue(f"warm-{self.tag}", b"", priority=1)
        try:
            await asyncio.wait_for(self.ready.wait(), 30)
        except asyncio.TimeoutError:
            raise RuntimeError(f"worker {self.tag} (pid {self.proc.pid}) did not run its warm-up job within 30 s")

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for raw in self.proc.stdout:
            line = raw.decode().split()
            if line == ["ready"]:
                self.ready.set()
            elif line and line[0] == "start":
                self.starts.setdefault(int(line[1]), (int(line[2]), float(line[3])))

    async def stop(self) -> list[tuple[int, float, float]]:
        """SIGTERM, then the records it wrote; kill -9 when it does not stop within 30 s."""
        assert self.proc
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except asyncio.TimeoutError:
                log(f"worker {self.tag} (pid {self.proc.pid}) ignored SIGTERM for 30 s: kill -9")
                self.kill()
                await self.proc.wait()
        records = []
        if self.out:
            with open(self.out) as f:
                records = [(int(n), float(e), float(s)) for n, e, s in (line.split() for line in f)]
            os.unlink(self.out)
        return records

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------------
# The bench.


class Bench:
    def __init__(self) -> None:
        self.results: dict[str, object] = {}
        self.workers: list[Worker] = []

    async def setup(self) -> None:
        self.conn = await connect()
        self.queries = Queries(AsyncpgDriver(self.conn))

    async def reset(self) -> None:
        """A fresh pgqueuer schema: its tables at their empty size, no dead rows, no old jobs."""
        await self.queries.uninstall()
        await self.queries.install()

    async def worker(self, tag: str, **kw) -> Worker:
        w = Worker(tag, **kw)
        self.workers.append(w)
        await w.start(self.queries)
        return w

    async def scalar(self, sql: str, *args):
        return await self.conn.fetchval(sql, *args)

    async def table_size(self, table: str) -> int:
        return await self.scalar("SELECT pg_total_relation_size($1::regclass)", table)

    # -- enqueue

    async def enqueue_rate(self, batch: int, clients: int) -> float:
        """jobs/s: `clients` tasks, each on its own connection, enqueue `batch` jobs per call for DURATION s."""
        await self.reset()
        conns = [await connect() for _ in range(clients)]
        qs = [Queries(AsyncpgDriver(c)) for c in conns]
        counts = [0] * clients
        deadline = time.monotonic() + DURATION

        async def run(i: int) -> None:
            q = qs[i]
            while time.monotonic() < deadline:
                now = f"{time.time():.6f}".encode()
                if batch == 1:
                    await q.enqueue("bench", b"%d," % counts[i] + now)
                else:
                    await q.enqueue(["bench"] * batch, [b"%d," % (counts[i] + j) + now for j in range(batch)], [0] * batch)
                counts[i] += batch

        t0 = time.monotonic()
        await asyncio.gather(*(run(i) for i in range(clients)))
        elapsed = time.monotonic() - t0
        for c in conns:
            await c.close()
        rate = sum(counts) / elapsed
        log(f"enqueue, {batch} per call, {clients} client(s): {rate:,.0f} jobs/s")
        return round(rate)

    # -- dequeue + complete

    async def completion_rate(self, tag: str, label: str, **worker_kw) -> dict:
        """Completions/s of one worker process draining PREFILL no-op jobs: the queue table's row count
        (pgqueuer deletes a job's row when it logs its completion) sampled every 0.5 s."""
        await self.reset()
        for i in range(0, PREFILL, 1000):
            k = min(1000, PREFILL - i)
            await self.queries.enqueue(["bench"] * k, [b"%d,0" % (i + j) for j in range(k)], [0] * k)
        # Statistics for the fresh table, as autovacuum would gather within a minute: without them the planner
        # picks a plan for an empty table and dequeues crawl (about 150 jobs/s with 250k queued).
        await self.conn.execute("ANALYZE pgqueuer")
        count_sql = "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'bench'"
        w = await self.worker(tag, **worker_kw)
        await asyncio.sleep(1)  # warm-up, not counted
        t0, c0 = time.monotonic(), await self.scalar(count_sql)
        t1, c1 = t0, c0
        while time.monotonic() - t0 < DURATION:
            await asyncio.sleep(0.5)
            t, c = time.monotonic(), await self.scalar(count_sql)
            if c == 0:  # drained: count up to the last sample that still had jobs left
                log(f"  the queue ran dry after {t - t0:.1f} s; raise PREFILL for a longer window")
                break
            t1, c1 = t, c
        await w.stop()
        rate = (c0 - c1) / (t1 - t0) if t1 > t0 else 0.0
        log(f"dequeue + complete, {label}: {rate:,.0f} jobs/s over {t1 - t0:.1f} s ({c0 - c1} jobs)")
        return {"jobs_per_s": round(rate), "seconds": round(t1 - t0, 1), "jobs": c0 - c1}

    # -- paced enqueue, latency

    async def paced(self, rate: float, seconds: float, on_tick=None) -> dict:
        """Enqueue one job per call at `rate` jobs/s for `seconds`, spread over SENDERS connections.
        The payload is "n,time.time()" taken just before the call. A backlog means the enqueuer could not
        keep the pace (then the figures are for a lower rate: see achieved_per_s)."""
        conns = [await connect() for _ in range(SENDERS)]
        qs = [Queries(AsyncpgDriver(c)) for c in conns]
        tickets: asyncio.Queue[int | None] = asyncio.Queue()
        done = [0]
        max_backlog = [0]

        async def sender(q: Queries) -> None:
            while (n := await tickets.get()) is not None:
                await q.enqueue("bench", b"%d,%.6f" % (n, time.time()))
                done[0] += 1

        tasks = [asyncio.create_task(sender(q)) for q in qs]
        t0, t0_wall = time.monotonic(), time.time()
        sent = 0
        total = int(seconds * rate)
        while sent < total:
            elapsed = time.monotonic() - t0
            due = total if elapsed >= seconds else min(int(elapsed * rate) + 1, total)
            while sent < due:
                tickets.put_nowait(sent)
                sent += 1
            max_backlog[0] = max(max_backlog[0], tickets.qsize())
            if on_tick:
                await on_tick(elapsed)
            await asyncio.sleep(0.001)
        for _ in tasks:
            tickets.put_nowait(None)
        await asyncio.gather(*tasks)
        wall = time.monotonic() - t0
        for c in conns:
            await c.close()
        return {"sent": sent, "achieved_per_s": round(done[0] / wall), "max_backlog": max_backlog[0], "t0_wall": t0_wall}

    async def wait_drained(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while await self.scalar("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'bench'") > 0:
            if time.monotonic() > deadline:
                log(f"  jobs still queued {timeout:.0f} s after the last enqueue")
                return
            await asyncio.sleep(0.2)

    async def latency(self, rate: float) -> dict:
        await self.reset()
        w = await self.worker(f"lat{int(rate)}", record=True)
        pace = await self.paced(rate, DURATION)
        await self.wait_drained()
        records = await w.stop()
        counted = [s - e for n, e, s in records if n >= WARMUP * rate]
        # The same from the moment each job was due (t0 + n / rate): it adds any wait before the enqueue was sent.
        from_due = [s - (pace["t0_wall"] + n / rate) for n, e, s in records if n >= WARMUP * rate]
        out = {"p50_ms": ms(pct(counted, 50)), "p99_ms": ms(pct(counted, 99)), "max_ms": ms(max(counted, default=None)),
               "p99_from_due_ms": ms(pct(from_due, 99)),
               "jobs": len(counted), "started": len(records), "sent": pace["sent"], "achieved_per_s": pace["achieved_per_s"],
               "max_backlog": pace["max_backlog"]}
        log(f"enqueue -> start at {rate:.0f}/s: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms "
            f"({out['jobs']} jobs counted, {pace['achieved_per_s']}/s achieved, {len(records)}/{pace['sent']} started)")
        return out

    # -- killed worker

    async def recovery(self, heartbeat_timeout: float | None) -> dict:
        """Worker A takes 8 jobs of 60 s; worker B runs meanwhile; A gets kill -9. Seconds from the kill until
        all 8 have started again on B. pgqueuer re-picks a `picked` job whose heartbeat is older than
        heartbeat_timeout (30 s by default) at a dequeue; an idle worker dequeues when notified or every
        dequeue_timeout (30 s by default)."""
        await self.reset()
        kw = {"heartbeat_timeout": heartbeat_timeout}
        a = await self.worker("a", **kw)
        await self.queries.enqueue(["slow"] * 8, [b"%d" % i for i in range(8)], [0] * 8)
        deadline = time.monotonic() + 30
        while len(a.starts) < 8:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker A started {len(a.starts)} of the 8 long jobs within 30 s")
            await asyncio.sleep(0.05)
        b = await self.worker("b", **kw)
        await asyncio.sleep(1)
        last_beat = await self.scalar("SELECT extract(epoch FROM max(heartbeat))::float8 FROM pgqueuer WHERE entrypoint = 'slow'")
        killed = time.time()
        a.kill()
        log(f"killed worker A (pid {a.proc.pid}); waiting up to {GIVE_UP:.0f} s for its 8 jobs to start on worker B")
        while len(b.starts) < 8 and time.time() - killed < GIVE_UP:
            await asyncio.sleep(0.05)
        b.kill()  # its jobs sleep 60 s: no need to wait for them
        await b.proc.wait()
        await a.proc.wait()
        hb = heartbeat_timeout if heartbeat_timeout is not None else 30.0
        out = {"heartbeat_timeout_s": hb, "restarted": len(b.starts),
               "stale_after_s": round(last_beat + hb - killed, 1)}  # when the first job became eligible again
        if len(b.starts) == 8:
            out["seconds"] = round(max(t for _, t in b.starts.values()) - killed, 1)
            out["first_s"] = round(min(t for _, t in b.starts.values()) - killed, 1)
            out["attempts_seen"] = sorted({att for att, _ in b.starts.values()})
        else:
            out["seconds"] = None
            out["text"] = f">{GIVE_UP:.0f} s"
        log(f"recovery (heartbeat_timeout {hb:g} s): {out}")
        return out

    # -- steady 1k/s

    async def steady(self, rate: float, seconds: float) -> dict:
        """Paced `rate` jobs/s for `seconds`; throughput (jobs started per second) and p99 latency of the first
        window vs the last (a minute each, or a tenth of the run when that is shorter), and the queue table's
        size (pg_total_relation_size) at start, after the first window and at the end."""
        await self.reset()
        window = min(60.0, seconds / 10)
        sizes = {"start": await self.table_size("pgqueuer"), "log_start": await self.table_size("pgqueuer_log")}
        w = await self.worker("steady", record=True)
        next_report = [window]

        async def tick(elapsed: float) -> None:
            if elapsed >= next_report[0]:
                if "after_first_window" not in sizes:
                    sizes["after_first_window"] = await self.table_size("pgqueuer")
                log(f"  steady: {elapsed:.0f}/{seconds:.0f} s")
                next_report[0] += max(window, 60)

        pace = await self.paced(rate, seconds, tick)
        sizes["end"] = await self.table_size("pgqueuer")
        sizes["log_end"] = await self.table_size("pgqueuer_log")
        await self.wait_drained(60)
        records = await w.stop()
        t0 = pace["t0_wall"]

        def window_figures(lo: float, hi: float) -> dict:
            lat = [s - e for _, e, s in records if lo <= e - t0 < hi]
            started = sum(1 for _, _, s in records if lo <= s - t0 < hi)
            return {"jobs_per_s": round(started / (hi - lo)), "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)), "jobs": len(lat)}

        out = {"seconds": seconds, "window_s": window, "rate": rate, "first": window_figures(0, window),
               "last": window_figures(seconds - window, seconds), "table_bytes": sizes,
               "sent": pace["sent"], "started": len(records), "achieved_per_s": pace["achieved_per_s"],
               "max_backlog": pace["max_backlog"]}
        log(f"steady {rate:.0f}/s for {seconds:.0f} s: first {out['first']}, last {out['last']}, sizes {sizes}")
        return out

    async def run(self) -> None:
        import pgqueuer

        r = self.results
        r["pgqueuer_version"] = pgqueuer.__version__
        r["asyncpg_version"] = asyncpg.__version__
        r["server_version"] = await self.scalar("SHOW server_version")
        r["duration_s"] = DURATION
        log(f"pgqueuer {pgqueuer.__version__}, asyncpg {asyncpg.__version__}, DURATION={DURATION:g} s, "
            f"STEADY_SECONDS={STEADY_SECONDS:g}, PREFILL={PREFILL}")
        r["enqueue_batch100_1client"] = await self.enqueue_rate(100, 1)
        r["enqueue_batch100_8clients"] = await self.enqueue_rate(100, 8)
        r["enqueue_single_1client"] = await self.enqueue_rate(1, 1)
        r["enqueue_single_8clients"] = await self.enqueue_rate(1, 8)
        # "Concurrency 8, one process" has no single pgqueuer spelling, so three are measured (scripts/bench-queue.sh
        # compares with the defaults and shows the others): 8 PgQueuer instances, as pgqueuer's own benchmark adds
        # dequeuers; entrypoint concurrency_limit=8, the literal knob, which holds a job's slot until the status
        # buffer flushes (every 0.1 s), so no-op jobs crawl at about 8 per flush; and one PgQueuer with defaults.
        r["completions_8managers"] = await self.completion_rate("managers8", "8 PgQueuer instances in one process", managers=8)
        r["completions_limit8"] = await self.completion_rate("limit8", "1 PgQueuer, entrypoint concurrency_limit=8", concurrency_limit=8)
        r["completions_default"] = await self.completion_rate("default", "1 PgQueuer, defaults (no limit)")
        r["latency_1k"] = await self.latency(1000)
        r["latency_2k"] = await self.latency(2000)
        rec = await self.recovery(None)
        r["recovery_default"] = rec
        if rec["seconds"] is None:
            # Never re-picked with the defaults: the figure with a short heartbeat_timeout, labelled as such.
            r["recovery_heartbeat_5s"] = await self.recovery(5.0)
        r["steady"] = await self.steady(1000, STEADY_SECONDS)

    async def close(self) -> None:
        for w in self.workers:
            w.kill()
        try:
            await self.queries.uninstall()
        finally:
            await self.conn.close()


async def bench_main() -> int:
    b = Bench()
    await b.setup()
    status = 0
    try:
        await b.run()
    except Exception as e:  # report what was measured, and what failed
        b.results["error"] = f"{type(e).__name__}: {e}"
        log(f"failed: {b.results['error']}")
        status = 1
    finally:
        await b.close()
    print(json.dumps(b.results))
    return status


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    w.add_argument("--tag", required=True)
    w.add_argument("--managers", type=int, default=1)
    w.add_argument("--concurrency-limit", type=int, default=0)
    w.add_argument("--record", action="store_true")
    w.add_argument("--out")
    w.add_argument("--heartbeat-timeout", type=float)
    args = p.parse_args()
    if args.cmd == "worker":
        uvloop.run(worker_main(args))
    else:
        sys.exit(uvloop.run(bench_main()))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""make bench-queue, poold's half: the issue-18 measurements against poold's durable queues, over the control
socket, the same ones pgqueuer_bench.py makes against pgqueuer on the same cluster.

    POOLD_BIN=$(swift build -c release --show-bin-path)/poold \\
      scripts/with-postgres.sh .build/bench-venv/bin/python Benchmarks/queue/poold_bench.py

It prints one JSON object of figures on stdout (with "error" when a phase failed: the figures measured before
it are kept); progress goes to stderr. It only needs the standard library (uvloop when importable). It never
builds poold: POOLD_BIN names a release binary (scripts/bench-queue.sh passes it).

Each phase starts poold on a fresh store: poold stopped, schema "poold" dropped (poold creates it at start),
bench_started emptied, so that no phase inherits another's rows. The queue `bench` runs the named job `mark`,
which inserts (n, enqueued, clock_timestamp()) into bench_started: a job's start time is read from there, and
its enqueue time is the time.time() the client put in its params just before sending the enqueue.

Environment: POOLD_BIN, POOLD_TEST_PG_* (from scripts/with-postgres.sh), DURATION (8), STEADY_SECONDS (600),
PREFILL (max(50000, 20000 * DURATION)), RECOVERY_GIVE_UP (120), POOLD_LOG_LEVEL (warning).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

ENV = os.environ
DURATION = float(ENV.get("DURATION", "8"))
STEADY_SECONDS = float(ENV.get("STEADY_SECONDS", "600"))
PREFILL = int(ENV.get("PREFILL", str(max(50_000, int(20_000 * DURATION)))))
GIVE_UP = float(ENV.get("RECOVERY_GIVE_UP", "120"))
SENDERS = 8  # connections the paced enqueuer spreads its requests over, as pgqueuer_bench.py does
WARMUP = min(1.0, DURATION / 4)  # seconds at the start of a latency phase that are not counted (first statements, caches)
# Enqueue phases measure the enqueue alone, as pgqueuer's run with no worker: jobs due in 2100 stay
# `scheduled`, so the queue's runner does not compete with the enqueuer for the machine's two cores.
FAR = "2100-01-01T00:00:00Z"
SLOW_SQL = "SELECT count(*) FROM poold.jobs WHERE queue = 'slow' AND state = 'running'"


def log(msg: str) -> None:
    print(f"poold-bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure worth reporting as it is (the message says what went wrong and what to look at)."""


class PooldError(BenchError):
    def __init__(self, op: str, reply: dict):
        err = reply.get("error") or {}
        self.code = err.get("code")
        hint = ""
        if self.code in ("unknown_op", "bad_request"):
            hint = " (are the queue ops built? this bench is written against docs/QUEUES.md's protocol)"
        super().__init__(f"op {op!r} answered {self.code}: {err.get('message')}{hint}")


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# ---------------------------------------------------------------------------------------------------
# The control socket: JSON lines; replies come in order per connection for the ops used here.


class Control:
    def __init__(self, path: str):
        self.path = path
        self.next_id = 0

    async def open(self) -> "Control":
        self.reader, self.writer = await asyncio.open_unix_connection(self.path, limit=64 * 1024 * 1024)
        return self

    def send(self, req: dict) -> int:
        """Write one request without waiting for its reply (pipelining); its id."""
        self.next_id += 1
        self.writer.write(json.dumps({"id": self.next_id, **req}, separators=(",", ":")).encode() + b"\n")
        return self.next_id

    async def reply(self, op: str, want_id: int | None = None) -> dict:
        line = await self.reader.readline()
        if not line:
            raise BenchError(f"poold closed the control connection while {op!r} waited for its reply")
        rep = json.loads(line)
        if want_id is not None and rep.get("id") != want_id:
            raise BenchError(f"reply id {rep.get('id')} for request {want_id} ({op!r}): replies out of order")
        if not rep.get("ok"):
            raise PooldError(op, rep)
        return rep

    async def call(self, req: dict) -> dict:
        rid = self.send(req)
        await self.writer.drain()
        return await self.reply(req["op"], rid)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------------
# poold processes.

CONFIG = """\
[daemon]
control_socket = {socket}
shutdown_grace = "5s"

[[pool]]
name = "pg"
kind = "postgres"
url = {url}
password_file = {password_file}
min = 4
max = 16
max_waiters = 4096

[[job]]
name = "mark"
pool = "pg"
sql = "INSERT INTO bench_started (n, enqueued, started) VALUES ($1::bigint, to_timestamp($2::float8), clock_timestamp())"

[[job]]
# The recovery phase's long job. Its timeout is above the pool's 30 s default job_timeout, or it would stop itself.
name = "sleep"
pool = "pg"
sql = "SELECT pg_sleep($1::float8)"
timeout = "90s"

[[queue]]
name = "bench"
store = "pg"
job = "mark"
concurrency = 8
# Finished jobs go after a minute, as a busy queue would be configured: the steady phase then
# shows whether the table stays flat once retention keeps pace (the default is 24 h).
retention = "1m"

[[queue]]
name = "slow"
store = "pg"
job = "sleep"
concurrency = 8
"""


class Poold:
    def __init__(self, bin_path: str, work: str, name: str):
        self.name = name
        self.socket = os.path.join(work, f"{name}.sock")
        self.config = os.path.join(work, f"{name}.toml")
        self.logfile = os.path.join(work, f"{name}.log")
        q = json.dumps  # a JSON string is a TOML basic string for these values
        with open(self.config, "w") as f:
            f.write(CONFIG.format(socket=q(self.socket), url=q(ENV["POOLD_TEST_PG_URL"]),
                                  password_file=q(os.path.join(work, "pg.password"))))
        self.bin = bin_path
        self.proc: subprocess.Popen | None = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-lines:]).strip()
        except OSError:
            return ""

    async def start(self) -> None:
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        env = dict(ENV, POOLD_LOG_LEVEL=ENV.get("POOLD_LOG_LEVEL", "warning"))
        with open(self.logfile, "ab") as logf:
            self.proc = subprocess.Popen([self.bin, "--config", self.config], stdout=logf, stderr=logf, env=env)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"poold {self.name} exited with status {self.proc.returncode} at start; "
                                 f"its log ({self.logfile}):\n{self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    # Ready once every queue has reached its store (schema made, lease held).
                    c = await Control(self.socket).open()
                    rep = await c.call({"op": "queues"})
                    await c.close()
                    if rep.get("queues") and all(q.get("store_reachable") for q in rep["queues"]):
                        return
                except (OSError, BenchError):
                    pass
            if time.monotonic() > deadline:
                raise BenchError(f"poold {self.name} (pid {self.proc.pid}) did not reach its queue store within 20 s; "
                                 f"its log:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def control(self) -> Control:
        return await Control(self.socket).open()

    async def stop(self) -> None:
        """SIGTERM (shutdown_grace is 5 s), SIGKILL after 20 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                log(f"poold {self.name} (pid {self.proc.pid}) still running 20 s after SIGTERM: kill -9")
                self.kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def check_alive(self) -> None:
        if self.proc and self.proc.poll() is not None:
            raise BenchError(f"poold {self.name} exited with status {self.proc.returncode}; its log:\n{self.log_tail()}")


# ---------------------------------------------------------------------------------------------------
# The bench.


class Bench:
    def __init__(self) -> None:
        self.results: dict[str, object] = {}
        self.hosts: list[Poold] = []
        try:
            self.bin = ENV["POOLD_BIN"]
            self.psql_cmd = ENV["POOLD_TEST_PG_PSQL"]
            ENV["POOLD_TEST_PG_URL"], ENV["POOLD_TEST_PG_PASSWORD"]
        except KeyError as e:
            raise BenchError(f"{e.args[0]} is not set: run under scripts/with-postgres.sh with POOLD_BIN "
                             "naming a release poold (scripts/bench-queue.sh does both)")
        if not os.access(self.bin, os.X_OK):
            raise BenchError(f"POOLD_BIN={self.bin} is not an executable (build it: swift build -c release --product poold)")
        self.work = tempfile.mkdtemp(prefix="poold-bench-queue-")
        fd = os.open(os.path.join(self.work, "pg.password"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, ENV["POOLD_TEST_PG_PASSWORD"].encode() + b"\n")
        os.close(fd)

    async def psql(self, sql: str) -> str:
        """The superuser psql of with-postgres.sh (unaligned, tuples only); its output."""
        p = await asyncio.create_subprocess_exec(self.psql_cmd, "-c", sql, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
        out, err = await p.communicate()
        if p.returncode != 0:
            raise BenchError(f"psql failed on {sql[:80]!r}: {err.decode().strip()}")
        return out.decode().strip()

    async def scalar(self, sql: str) -> int:
        return int(await self.psql(sql) or 0)

    async def host(self, name: str) -> Poold:
        h = Poold(self.bin, self.work, name)
        self.hosts.append(h)
        await h.start()
        return h

    async def reset(self) -> Poold:
        """Every poold stopped, a fresh store, then host A started (which creates the queue schema)."""
        for h in self.hosts:
            await h.stop()
        self.hosts.clear()
        # Backends a killed poold left behind (a recovery phase's 60 s pg_sleep) would hold the DROP up.
        await self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'poold'")
        await self.psql("DROP SCHEMA IF EXISTS poold CASCADE")
        await self.psql("TRUNCATE bench_started")
        return await self.host("a")

    async def setup(self) -> None:
        await self.psql("CREATE TABLE IF NOT EXISTS bench_started (n bigint NOT NULL, enqueued timestamptz NOT NULL, "
                        "started timestamptz NOT NULL)")
        await self.psql("GRANT ALL ON bench_started TO poold")
        a = await self.reset()
        c = await a.control()
        try:
            rep = await c.call({"op": "queues"})
        finally:
            await c.close()
        names = sorted(q.get("name") for q in rep.get("queues", []))
        if names != ["bench", "slow"]:
            raise BenchError(f"op 'queues' lists {names}, expected ['bench', 'slow'] from {a.config}")
        self.results["server_version"] = await self.psql("SHOW server_version")

    async def table_size(self) -> int:
        return await self.scalar("SELECT pg_total_relation_size('poold.jobs')")

    # -- enqueue

    async def enqueue_rate(self, batch: int, clients: int) -> int:
        """jobs/s: `clients` connections, each sending one enqueue at a time, `batch` jobs per call (the batch
        form when batch > 1), for DURATION s."""
        a = await self.reset()
        conns = [await a.control() for _ in range(clients)]
        counts = [0] * clients
        deadline = time.monotonic() + DURATION

        async def run(i: int) -> None:
            c = conns[i]
            while time.monotonic() < deadline:
                now = time.time()
                if batch == 1:
                    await c.call({"op": "enqueue", "queue": "bench", "params": [counts[i], now], "run_at": FAR})
                else:
                    jobs = [{"params": [counts[i] + j, now], "run_at": FAR} for j in range(batch)]
                    rep = await c.call({"op": "enqueue", "queue": "bench", "jobs": jobs})
                    if len(rep.get("job_ids", [])) != batch:
                        raise BenchError(f"batch enqueue of {batch} answered {len(rep.get('job_ids', []))} job_ids")
                counts[i] += batch

        t0 = time.monotonic()
        await asyncio.gather(*(run(i) for i in range(clients)))
        elapsed = time.monotonic() - t0
        for c in conns:
            await c.close()
        stored = await self.scalar("SELECT count(*) FROM poold.jobs WHERE queue = 'bench'")
        if stored != sum(counts):
            raise BenchError(f"enqueue answered {sum(counts)} jobs but poold.jobs holds {stored}")
        rate = sum(counts) / elapsed
        log(f"enqueue, {batch} per call, {clients} connection(s): {rate:,.0f} jobs/s")
        return round(rate)

    # -- dequeue + complete

    async def completion_rate(self) -> dict:
        """Completions/s of one poold (queue bench, concurrency 8) on PREFILL no-op-ish jobs (each inserts its
        bench_started row, and its completion commits with it), from bench_started's row count every 0.5 s.
        The jobs are enqueued due a moment later, so that the runner starts on the whole backlog at once."""
        a = await self.reset()
        c = await a.control()
        began = time.time()
        run_at_unix = began + 2 + PREFILL / 20_000  # the prefill's time at 20k/s, and a margin
        run_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run_at_unix)) + f".{int(run_at_unix % 1 * 1e6):06d}Z"
        in_flight = 0
        for i in range(0, PREFILL, 1000):
            k = min(1000, PREFILL - i)
            c.send({"op": "enqueue", "queue": "bench", "jobs": [{"params": [i + j, 0], "run_at": run_at} for j in range(k)]})
            in_flight += 1
            if in_flight == 8:  # at most 8 batches in flight
                await c.reply("enqueue")
                in_flight -= 1
        for _ in range(in_flight):
            await c.reply("enqueue")
        # Statistics for the filled table, as pgqueuer's phase gets them (autovacuum would within a minute).
        await self.psql("ANALYZE poold.jobs")
        if time.time() > run_at_unix:
            log(f"  the prefill took {time.time() - began:.1f} s, past the jobs' run_at: some ran meanwhile")
        await asyncio.sleep(max(0.0, run_at_unix - time.time()) + 1)  # due, then a second of warm-up
        count_sql = "SELECT count(*) FROM bench_started"
        t0, c0 = time.monotonic(), await self.scalar(count_sql)
        t1, c1 = t0, c0
        while time.monotonic() - t0 < DURATION:
            await asyncio.sleep(0.5)
            t, n = time.monotonic(), await self.scalar(count_sql)
            if n >= PREFILL:
                log(f"  the queue ran dry after {t - t0:.1f} s; raise PREFILL for a longer window")
                break
            t1, c1 = t, n
        a.check_alive()
        q = await c.call({"op": "queues"})
        await c.close()
        rate = (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
        log(f"dequeue + complete, concurrency 8: {rate:,.0f} jobs/s over {t1 - t0:.1f} s ({c1 - c0} jobs)")
        bench_q = next((x for x in q.get("queues", []) if x.get("name") == "bench"), {})
        return {"jobs_per_s": round(rate), "seconds": round(t1 - t0, 1), "jobs": c1 - c0,
                "queues_completed_per_second": bench_q.get("completed_per_second")}

    # -- paced enqueue, latency

    async def paced(self, host: Poold, rate: float, seconds: float, on_tick=None) -> dict:
        """Enqueue one job per request at `rate` jobs/s for `seconds`, round-robin over SENDERS connections
        (as pgqueuer's run spreads its calls over as many), pipelined: a request is written when it is due,
        whatever is still unanswered. Its params are [n, time.time()] taken as it is written."""
        conns = [await host.control() for _ in range(SENDERS)]
        answered = [0]
        errors: list[str] = []
        sent = 0

        async def read_replies(c: Control) -> None:
            while True:
                try:
                    await c.reply("enqueue")
                except PooldError as e:
                    errors.append(str(e))
                answered[0] += 1

        readers = [asyncio.create_task(read_replies(c)) for c in conns]
        t0 = time.monotonic()
        t0_wall = time.time()
        total = int(seconds * rate)
        max_unanswered = 0
        while sent < total:
            elapsed = time.monotonic() - t0
            due = total if elapsed >= seconds else min(int(elapsed * rate) + 1, total)
            while sent < due:
                conns[sent % SENDERS].send({"op": "enqueue", "queue": "bench", "params": [sent, time.time()]})
                sent += 1
            for c in conns:
                await c.writer.drain()
            max_unanswered = max(max_unanswered, sent - answered[0])
            if on_tick:
                await on_tick(elapsed)
            await asyncio.sleep(0.001)
        deadline = time.monotonic() + 60
        while answered[0] < sent and not any(r.done() for r in readers) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        wall = time.monotonic() - t0
        for r in readers:
            if r.done():  # it ended on its own: the connection broke
                r.result()
            r.cancel()  # it waits on a line that will not come: nothing is in flight any more
            with contextlib.suppress(asyncio.CancelledError):
                await r
        for c in conns:
            await c.close()
        if answered[0] < sent:
            raise BenchError(f"paced enqueue: {sent - answered[0]} of {sent} requests unanswered 60 s after the last")
        if errors:
            raise BenchError(f"paced enqueue: {len(errors)} of {sent} refused, the first: {errors[0]}")
        return {"sent": sent, "achieved_per_s": round(answered[0] / wall), "max_unanswered": max_unanswered, "t0_wall": t0_wall}

    async def wait_started(self, n: int, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while (got := await self.scalar("SELECT count(*) FROM bench_started")) < n:
            if time.monotonic() > deadline:
                log(f"  {n - got} jobs not started {timeout:.0f} s after the last enqueue")
                break
            await asyncio.sleep(0.2)
        return got

    async def started_rows(self) -> list[tuple[int, float, float]]:
        out = await self.psql("SELECT n, extract(epoch FROM enqueued), extract(epoch FROM started) FROM bench_started")
        return [(int(n), float(e), float(s)) for n, e, s in (line.split("|") for line in out.splitlines() if line)]

    async def latency(self, rate: float) -> dict:
        a = await self.reset()
        pace = await self.paced(a, rate, DURATION)
        await self.wait_started(pace["sent"])
        a.check_alive()
        c = await a.control()
        # job_status of one job, a check of the op the issue lists (its answer is kept, not judged).
        last = await self.scalar("SELECT max(id) FROM poold.jobs WHERE queue = 'bench'")
        status = await c.call({"op": "job_status", "job_id": last})
        await c.close()
        records = await self.started_rows()
        counted = [s - e for n, e, s in records if n >= WARMUP * rate]
        # The same from the moment each job was due (t0 + n / rate): it adds any wait before the enqueue was sent.
        from_due = [s - (pace["t0_wall"] + n / rate) for n, e, s in records if n >= WARMUP * rate]
        out = {"p50_ms": ms(pct(counted, 50)), "p99_ms": ms(pct(counted, 99)), "max_ms": ms(max(counted, default=None)),
               "p99_from_due_ms": ms(pct(from_due, 99)),
               "jobs": len(counted), "started": len(records), "sent": pace["sent"], "achieved_per_s": pace["achieved_per_s"],
               "max_unanswered": pace["max_unanswered"], "job_status_sample": {k: status.get(k) for k in ("state", "attempt")}}
        log(f"enqueue -> start at {rate:.0f}/s: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms "
            f"({out['jobs']} jobs counted, {pace['achieved_per_s']}/s achieved, {len(records)}/{pace['sent']} started)")
        return out

    # -- killed host

    async def recovery(self) -> dict:
        """Host A takes 8 jobs of 60 s; host B starts; A gets kill -9. Seconds from the kill until all 8 run
        again (attempt 2), which only B can do. docs/QUEUES.md: a dead host's lease expires 5 s after its last
        renewal, a rescue runs every second: about 6 s."""
        a = await self.reset()
        c = await a.control()
        rep = await c.call({"op": "enqueue", "queue": "slow", "jobs": [{"params": [60]} for _ in range(8)]})
        await c.close()
        ids = rep.get("job_ids", [])
        deadline = time.monotonic() + 30
        while await self.scalar(SLOW_SQL) < 8:
            if time.monotonic() > deadline:
                raise BenchError(f"host A runs {await self.scalar(SLOW_SQL)} of the 8 slow jobs 30 s after enqueueing them")
            await asyncio.sleep(0.05)
        b = await self.host("b")
        await asyncio.sleep(1)
        killed = time.time()
        a.kill()
        log(f"killed poold A (pid {a.proc.pid}); waiting up to {GIVE_UP:.0f} s for its 8 jobs to run again on B")
        again_sql = SLOW_SQL + " AND attempt = 2"
        first = None
        while (n := await self.scalar(again_sql)) < 8 and time.time() - killed < GIVE_UP:
            if n and first is None:
                first = time.time() - killed
            await asyncio.sleep(0.1)
        elapsed = time.time() - killed
        b.check_alive()
        out = {"restarted": n, "job_ids": ids}
        if n >= 8:
            out["seconds"] = round(elapsed, 1)
            out["first_s"] = round(first if first is not None else elapsed, 1)
        else:
            out["seconds"] = None
            out["text"] = f">{GIVE_UP:.0f} s"
        log(f"recovery: {out}")
        b.kill()  # its jobs sleep 60 s: no need to wait for them
        return out

    # -- steady 1k/s

    async def steady(self, rate: float, seconds: float) -> dict:
        """Paced `rate` jobs/s for `seconds`; throughput (jobs started per second) and p99 latency of the first
        window vs the last (a minute each, or a tenth of the run when that is shorter), and poold.jobs' size
        (pg_total_relation_size) at start, after the first window and at the end."""
        a = await self.reset()
        window = min(60.0, seconds / 10)
        sizes = {"start": await self.table_size()}
        next_report = [window]

        async def tick(elapsed: float) -> None:
            if elapsed >= next_report[0]:
                if "after_first_window" not in sizes:
                    sizes["after_first_window"] = await self.table_size()
                a.check_alive()
                log(f"  steady: {elapsed:.0f}/{seconds:.0f} s")
                next_report[0] += max(window, 60)

        pace = await self.paced(a, rate, seconds, tick)
        sizes["end"] = await self.table_size()
        await self.wait_started(pace["sent"], 60)
        records = await self.started_rows()
        t0 = pace["t0_wall"]

        def window_figures(lo: float, hi: float) -> dict:
            lat = [s - e for _, e, s in records if lo <= e - t0 < hi]
            started = sum(1 for _, _, s in records if lo <= s - t0 < hi)
            return {"jobs_per_s": round(started / (hi - lo)), "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)), "jobs": len(lat)}

        out = {"seconds": seconds, "window_s": window, "rate": rate, "first": window_figures(0, window),
               "last": window_figures(seconds - window, seconds), "table_bytes": sizes,
               "sent": pace["sent"], "started": len(records), "achieved_per_s": pace["achieved_per_s"],
               "max_unanswered": pace["max_unanswered"]}
        log(f"steady {rate:.0f}/s for {seconds:.0f} s: first {out['first']}, last {out['last']}, sizes {sizes}")
        return out

    async def run(self) -> None:
        r = self.results
        r["duration_s"] = DURATION
        log(f"poold {self.bin}, DURATION={DURATION:g} s, STEADY_SECONDS={STEADY_SECONDS:g}, PREFILL={PREFILL}")
        await self.setup()
        r["enqueue_batch100_1client"] = await self.enqueue_rate(100, 1)
        r["enqueue_batch100_8clients"] = await self.enqueue_rate(100, 8)
        r["enqueue_single_1client"] = await self.enqueue_rate(1, 1)
        r["enqueue_single_8clients"] = await self.enqueue_rate(1, 8)
        r["completions"] = await self.completion_rate()
        r["latency_1k"] = await self.latency(1000)
        r["latency_2k"] = await self.latency(2000)
        r["recovery"] = await self.recovery()
        r["steady"] = await self.steady(1000, STEADY_SECONDS)

    async def close(self) -> None:
        for h in self.hosts:
            await h.stop()
        try:
            await self.psql("DROP SCHEMA IF EXISTS poold CASCADE")
        except BenchError as e:
            log(f"cleanup: {e}")


async def bench_main() -> int:
    try:
        b = Bench()
    except BenchError as e:
        print(json.dumps({"error": str(e)}))
        log(f"failed: {e}")
        return 1
    status = 0
    try:
        await b.run()
    except Exception as e:  # report what was measured, and what failed
        b.results["error"] = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
        log(f"failed: {b.results['error']}")
        status = 1
    finally:
        await b.close()
        logs = [h.logfile for h in b.hosts]
        if status == 0:
            subprocess.run(["rm", "-rf", b.work])
        else:
            log(f"poold's config and logs are kept in {b.work} {logs}")
    print(json.dumps(b.results))
    return status


def main() -> None:
    try:
        import uvloop  # the venv has it (pgqueuer depends on it); the stdlib loop otherwise
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    sys.exit(run(bench_main()))


if __name__ == "__main__":
    main()

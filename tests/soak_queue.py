#!/usr/bin/env python3
"""Durable queue soak for poold (`make soak-queue`; not part of `make test`).

Three poold processes are hosts of one store (the throwaway cluster). A stream of JOBS (20,000)
SQL jobs is enqueued through whichever hosts are up, each job inserting its number into a
table. Meanwhile KILLS (100) times a random host gets SIGKILL and is started again, and once,
halfway, the PostgreSQL server restarts. Then every job must complete, and the report says:

- lost jobs: enqueued (acknowledged, or found in the store after a lost reply) and never
  completed. Must be 0.
- duplicate effects: numbers in the table more than once. Must be 0: a SQL job's effect and
  its completion commit together.
- duplicate executions: attempts beyond the first of completed jobs, against the jobs that
  were running on the killed hosts when they were killed: the first can be at most the second.

An enqueue whose reply is lost (its host was killed) is sent again only if the store has no
job with its unique_key, so a retry cannot add a second job.

Run beside a throwaway PostgreSQL cluster:  scripts/with-postgres.sh tests/soak_queue.py
Environment: POOLD_BIN (default `$(swift build --show-bin-path)/poold`), JOBS (20000),
KILLS (100), SOAK_SEED (random, printed). Python 3 standard library only.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
JOBS = int(os.environ.get("JOBS", "20000"))
KILLS = int(os.environ.get("KILLS", "100"))
BATCH = 50
SEED = int(os.environ.get("SOAK_SEED", str(random.randrange(1 << 31))))
PSQL = os.environ["POOLD_TEST_PG_PSQL"]
PG_CTL = os.environ["POOLD_TEST_PG_CTL"]


def psql(sql):
    out = subprocess.run([PSQL, "-At", "-c", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {sql[:80]}: {out.stderr.strip()}")
    return out.stdout.strip()


def poold_bin():
    if os.environ.get("POOLD_BIN"):
        return os.environ["POOLD_BIN"]
    path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO, capture_output=True, text=True, check=True)
    return os.path.join(path.stdout.strip(), "poold")


class Host:
    def __init__(self, index, work, binary):
        self.index = index
        self.dir = os.path.join(work, f"host{index}")
        os.makedirs(self.dir)
        self.socket = os.path.join(self.dir, "control.sock")
        self.config = os.path.join(self.dir, "poold.toml")
        self.binary = binary
        self.proc = None
        with open(os.path.join(self.dir, "pg.password"), "w") as f:
            f.write(os.environ["POOLD_TEST_PG_PASSWORD"])
        with open(self.config, "w") as f:
            f.write(f"""
[daemon]
control_socket = "{self.socket}"
shutdown_grace = "2s"

[[pool]]
name = "pg"
kind = "postgres"
url = "{os.environ["POOLD_TEST_PG_URL"]}"
password_file = "{self.dir}/pg.password"
application_name = "poold-soak-queue"
max = 12
max_waiters = 1024

[[job]]
name = "insert"
pool = "pg"
sql = "INSERT INTO soak_effects (n) SELECT $1::int FROM pg_sleep(CASE WHEN $1::int % 50 = 0 THEN 0.5 ELSE 0.002 END)"

[[queue]]
name = "soak"
store = "pg"
job = "insert"
concurrency = 8
max_attempts = 200
""")

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        log = open(os.path.join(self.dir, "poold.log"), "ab")
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=log, stderr=log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                reply = self.request({"op": "queues"}, timeout=2)
                if reply.get("ok") and all(q.get("store_reachable") for q in reply["queues"]):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"host {self.index} exited at start ({self.proc.returncode}); see {self.dir}/poold.log")
            time.sleep(0.05)
        raise RuntimeError(f"host {self.index} did not reach the store within 20 s; see {self.dir}/poold.log")

    def up(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def request(self, fields, timeout=30):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(self.socket)
            s.sendall((json.dumps(fields) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("connection closed before the reply")
                data += chunk
            return json.loads(data)
        finally:
            s.close()


def main():
    rng = random.Random(SEED)
    print(f"soak-queue: JOBS={JOBS} KILLS={KILLS} SOAK_SEED={SEED}", flush=True)
    psql("DROP SCHEMA IF EXISTS poold CASCADE")
    psql("DROP TABLE IF EXISTS soak_effects")
    psql("CREATE TABLE soak_effects (n int NOT NULL); GRANT ALL ON soak_effects TO poold")
    work = tempfile.mkdtemp(prefix="poold-soak-queue-")
    binary = poold_bin()
    hosts = [Host(i, work, binary) for i in range(3)]
    for host in hosts:
        host.start()
    lock = threading.Lock()
    in_flight_at_kills = [0]
    enqueued = [0]
    failures = []

    def enqueuer():
        numbers = list(range(JOBS))
        for start in range(0, JOBS, BATCH):
            batch = numbers[start:start + BATCH]
            jobs = [{"params": [n], "unique_key": f"soak-{n}"} for n in batch]
            while True:
                host = rng.choice([h for h in hosts if h.up()] or hosts)
                try:
                    reply = host.request({"op": "enqueue", "queue": "soak", "jobs": jobs}, timeout=10)
                    if reply.get("ok"):
                        break
                    code = reply.get("error", {}).get("code")
                    if code not in ("backend", "shutting_down", "overloaded", "pool_timeout", "timeout"):
                        failures.append(f"enqueue refused: {reply}")
                        return
                except (OSError, ValueError):
                    pass
                # No reply, or a retryable one: the batch may have committed all the same.
                keys = ",".join(f"'soak-{n}'" for n in batch)
                try:
                    found = int(psql(f"SELECT count(*) FROM poold.jobs WHERE unique_key IN ({keys})"))
                except RuntimeError:
                    time.sleep(0.5)  # the server is restarting
                    continue
                if found == len(batch):
                    break
                if found != 0:
                    failures.append(f"a batch was half enqueued: {found} of {len(batch)}")
                    return
                time.sleep(0.1)
            with lock:
                enqueued[0] += len(batch)
            # Paced so that the stream lasts about as long as the kill cycles (≈ 1.4 s each).
            time.sleep(max(0.02, KILLS * 1.4 / (JOBS / BATCH)))

    stream = threading.Thread(target=enqueuer)
    stream.start()
    restarted = False
    started = time.time()
    for kill in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.5))
        victim = rng.choice(hosts)
        if not victim.up():
            victim.start()
            continue
        try:
            epoch = psql(f"SELECT epoch FROM poold.hosts WHERE pid = {victim.proc.pid}")
            running = int(psql(f"SELECT count(*) FROM poold.jobs WHERE state = 'running' AND lease = {epoch}")) if epoch else 0
        except RuntimeError:
            running = 0
        victim.kill()
        in_flight_at_kills[0] += running
        if not restarted and kill >= KILLS // 2:
            restarted = True
            print("soak-queue: restarting PostgreSQL", flush=True)
            subprocess.run([PG_CTL, "restart", "-m", "fast", "-w"], capture_output=True, check=True)
        time.sleep(rng.uniform(0, 0.5))
        victim.start()
        if kill % 10 == 9:
            print(f"soak-queue: {kill + 1} kills, {enqueued[0]} jobs enqueued, "
                  f"{psql('SELECT count(*) FROM soak_effects')} effects", flush=True)
    stream.join()
    if failures:
        print("soak-queue: FAILED: " + "; ".join(failures[:5]))
        return 1
    deadline = time.time() + 300
    while time.time() < deadline:
        left = int(psql("SELECT count(*) FROM poold.jobs WHERE state <> 'completed'"))
        if left == 0:
            break
        time.sleep(1)
    elapsed = time.time() - started
    total = int(psql("SELECT count(*) FROM poold.jobs"))
    completed = int(psql("SELECT count(*) FROM poold.jobs WHERE state = 'completed'"))
    states = psql("SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) n FROM poold.jobs GROUP BY state) s")
    distinct = int(psql("SELECT count(DISTINCT n) FROM soak_effects"))
    duplicates = int(psql("SELECT coalesce(sum(c - 1), 0) FROM (SELECT count(*) c FROM soak_effects GROUP BY n) s"))
    missing_numbers = JOBS - distinct
    reruns = int(psql("SELECT coalesce(sum(attempt - 1), 0) FROM poold.jobs WHERE state = 'completed'"))
    for host in hosts:
        if host.up():
            host.proc.send_signal(signal.SIGTERM)
            host.proc.wait(timeout=30)
    lost = JOBS - completed
    print(f"soak-queue: {JOBS} jobs, {KILLS} kill -9 cycles, 1 PostgreSQL restart, {elapsed:.0f} s")
    print(f"  jobs in the store: {total} ({states})")
    print(f"  lost jobs: {lost}   (numbers never inserted: {missing_numbers})")
    print(f"  duplicate effects: {duplicates}")
    print(f"  duplicate executions: {reruns}   (jobs running on the killed hosts when killed: {in_flight_at_kills[0]})")
    ok = lost == 0 and missing_numbers == 0 and duplicates == 0 and total == JOBS and reruns <= in_flight_at_kills[0]
    print("soak-queue: " + ("PASSED" if ok else f"FAILED (logs in {work})"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Shutdown soak test for poold (`make soak`; not part of `make test`).

Each cycle starts a real poold with two SQLite pools (max 4, and max 1), a PostgreSQL pool and
two exec pools (max 2, and max 1), loads all five from several pipelining client connections
(the max = 1 pools are contended: jobs wait, time out in the queue or are refused as overloaded), sends SIGTERM (a second one in a third of the
cycles) after a random delay, and checks what DESIGN.md §3 promises: exit status 0, every
request that was sent answered exactly once with an expected code, no PostgreSQL connection
and no worker process left, no socket file left, and both databases consistent with the
answers (a transaction answered ok is there in full, one answered with an error is absent).

Run beside a throwaway PostgreSQL cluster:  scripts/with-postgres.sh tests/soak.py
Environment: POOLD_BIN (default `$(swift build --show-bin-path)/poold`), CYCLES (100),
SOAK_SEED (random, printed; it repeats the delays, double signals and request mix, not the
thread timing). Python 3 standard library only.
"""
import errno
import json
import os
import random
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ECHO_WORKER = os.path.join(REPO, "Tests", "workers", "echo.py")
APPLICATION = "poold-soak"
EXPECTED_CODES = {"shutting_down", "cancelled", "timeout", "overloaded", "pool_timeout"}
CLIENTS_PER_KIND = 2
PIPELINE = 4
SQLITE_SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT count(*) FROM c"
PG_SLOW = "SELECT pg_sleep(0.05)"
# Client kinds: the pool each loads (and, for SQLite, its database file).
SQLITE_POOLS = {"sqlite": "lite", "sqlite1": "lite1"}
EXEC_POOLS = {"exec": "workers", "exec1": "workers1"}
KINDS = ("sqlite", "sqlite1", "pg", "exec", "exec1")
EXIT_LIMIT = 30.0          # seconds from the first SIGTERM before poold is killed
CLIENT_LIMIT = 45.0        # seconds a client keeps reading after the first SIGTERM


def die(message):
    print(f"soak: {message}", file=sys.stderr)
    sys.exit(2)


def poold_binary():
    if os.environ.get("POOLD_BIN"):
        return os.environ["POOLD_BIN"]
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    return os.path.join(out, "poold")


def psql(sql):
    """Runs SQL as the superuser on the throwaway cluster; its output lines."""
    out = subprocess.run([os.environ["POOLD_TEST_PG_PSQL"], "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def proc_start_time(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks) and the state, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()   # fields[0] is field 3 (state)
    return int(fields[19]), fields[0]


def children_of(pid):
    pids = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


class Connection:
    """What one client connection saw: requests sent, replies by id, and how it ended."""

    def __init__(self, name):
        self.name = name
        self.sent = {}         # id -> the request's expected effect (for checks)
        self.replies = {}      # id -> reply
        self.duplicates = []   # ids answered twice
        self.unknown = []      # replies whose id was never sent on this connection
        self.ended = None      # "eof", "connect: …", "reset", "error: …"
        self.got_shutting_down = False
        self.times = {}        # "connect", "first_send", "last_send", "first_reply", "end": time.monotonic()


class Client(threading.Thread):
    """One well-behaved client: pipelines up to PIPELINE requests on a connection, opens a new
    connection now and then, and after `shutting_down`, a connect failure, EOF or EPIPE sends
    nothing more and reads its open connection to EOF."""

    def __init__(self, cycle, kind, index, sock_path, rng, signalled):
        super().__init__(daemon=True, name=f"{kind}{index}")
        self.cycle, self.kind, self.index = cycle, kind, index
        self.sock_path, self.rng, self.signalled = sock_path, rng, signalled
        self.connections = []
        self.counter = 0
        self.stopping = False
        self.crash = None

    def next_request(self):
        self.counter += 1
        rid = f"c{self.cycle}-{self.kind}{self.index}-{self.counter}"
        slow = self.rng.random() < 0.3
        if self.kind in SQLITE_POOLS:
            batch = [{"sql": "INSERT INTO a(id) VALUES (?1)", "params": [rid]}]
            if slow:
                batch.append({"sql": SQLITE_SLOW})
            batch.append({"sql": "INSERT INTO b(id) VALUES (?1)", "params": [rid]})
            req = {"id": rid, "op": "run", "pool": SQLITE_POOLS[self.kind], "batch": batch, "transaction": True}
        elif self.kind == "pg":
            batch = [{"sql": "INSERT INTO soak_a(id) VALUES ($1)", "params": [rid]}]
            if slow:
                batch.append({"sql": PG_SLOW})
            batch.append({"sql": "INSERT INTO soak_b(id) VALUES ($1)", "params": [rid]})
            req = {"id": rid, "op": "run", "pool": "pg", "batch": batch, "transaction": True}
        else:
            data = {"n": self.counter, "who": rid, "text": "héllo ✓"}
            if slow:
                data["sleep"] = 0.05
            req = {"id": rid, "op": "run", "pool": EXEC_POOLS[self.kind], "input": data}
        return rid, req, (json.dumps(req, ensure_ascii=False) + "\n").encode()

    def run(self):
        try:
            while not self.stopping:
                conn = Connection(f"{self.name}#{len(self.connections)}")
                self.connections.append(conn)
                # Half the connections are short, so that connects keep landing around the
                # signal (a connection accepted while the listener closes must be served too).
                short = self.rng.random() < 0.5
                self.talk(conn, self.rng.randint(1, 8) if short else self.rng.randint(10, 200))
        except Exception as e:  # a bug in the soak itself: reported as a failure of the cycle
            self.crash = f"{type(e).__name__}: {e}"

    def talk(self, conn, budget):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock_path)
            conn.times["connect"] = time.monotonic()
        except OSError as e:
            conn.times["end"] = time.monotonic()
            conn.ended = f"connect: {errno.errorcode.get(e.errno, e.errno)}"
            self.stopping = True
            s.close()
            return
        try:
            self.exchange(s, conn, budget)
        finally:
            conn.times["end"] = time.monotonic()
            s.close()

    def exchange(self, s, conn, budget):
        inflight = set()
        buf = b""
        sending = True
        deadline = None
        while True:
            if self.signalled.is_set() and deadline is None:
                deadline = self.signalled.at + CLIENT_LIMIT
            if self.stopping or budget <= 0:
                sending = False
            while sending and len(inflight) < PIPELINE and budget > 0:
                rid, req, line = self.next_request()
                try:
                    whole = self.write(s, line)
                except OSError as e:
                    self.stopping = True
                    sending = False
                    if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                        conn.ended = f"write: {errno.errorcode.get(e.errno, e.errno)}"
                    break
                if not whole:
                    self.stopping = True
                    sending = False
                    break
                conn.sent[rid] = req
                conn.times.setdefault("first_send", time.monotonic())
                conn.times["last_send"] = time.monotonic()
                inflight.add(rid)
                budget -= 1
            if not sending and not inflight and not self.stopping:
                conn.ended = "closed by client"  # its budget used and answered: open another
                return
            timeout = 0.5
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    conn.ended = conn.ended or "no EOF within the client limit"
                    return
                timeout = min(timeout, 0.5)
            ready, _, _ = select.select([s], [], [], timeout)
            if not ready:
                continue
            try:
                chunk = s.recv(65536)
            except OSError as e:
                conn.ended = "reset" if e.errno == errno.ECONNRESET else f"read: {errno.errorcode.get(e.errno, e.errno)}"
                self.stopping = True
                return
            if not chunk:
                if buf.strip():
                    conn.unknown.append(f"partial line at EOF: {buf[:200]!r}")
                conn.ended = conn.ended or "eof"
                self.stopping = True
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                if not raw.strip():
                    continue
                try:
                    reply = json.loads(raw)
                    rid = reply.get("id")
                except (ValueError, AttributeError):
                    conn.unknown.append(f"not JSON: {raw[:200]!r}")
                    continue
                if rid not in conn.sent:
                    conn.unknown.append(raw.decode(errors="replace")[:300])
                    continue
                if rid in conn.replies:
                    conn.duplicates.append(rid)
                    continue
                conn.replies[rid] = reply
                conn.times.setdefault("first_reply", time.monotonic())
                inflight.discard(rid)
                if not reply.get("ok") and (reply.get("error") or {}).get("code") == "shutting_down":
                    conn.got_shutting_down = True
                    self.stopping = True

    @staticmethod
    def write(s, line):
        """Writes one line; True when all of it went out. Raises on EPIPE and the like."""
        view = memoryview(line)
        s.settimeout(10)
        try:
            while view:
                n = s.send(view)
                view = view[n:]
        except socket.timeout:
            return False
        except OSError:
            if len(view) < len(line):
                return False  # part of the line went out: not sent, and nothing more to send
            raise
        finally:
            s.settimeout(None)
        return True


class Signalled(threading.Event):
    at = 0.0


def write_config(tmp, pg_url, pg_password):
    with open(os.path.join(tmp, "pg.password"), "w") as f:
        f.write(pg_password + "\n")
    os.chmod(os.path.join(tmp, "pg.password"), 0o600)
    config = f"""[daemon]
control_socket = "{tmp}/control.sock"
shutdown_grace = "2s"

[[pool]]
name = "lite"
kind = "sqlite"
path = "{tmp}/lite.db"
min = 1
max = 4
allow_adhoc = true

[[pool]]
name = "lite1"
kind = "sqlite"
path = "{tmp}/lite1.db"
min = 1
max = 1
max_waiters = 4
acquire_timeout = "500ms"
allow_adhoc = true

[[pool]]
name = "pg"
kind = "postgres"
url = "{pg_url}"
password_file = "{tmp}/pg.password"
application_name = "{APPLICATION}"
min = 1
max = 4
allow_adhoc = true

[[pool]]
name = "workers"
kind = "exec"
command = ["python3", "{ECHO_WORKER}"]
min = 1
max = 2
allow_adhoc = true

[[pool]]
name = "workers1"
kind = "exec"
command = ["python3", "{ECHO_WORKER}"]
min = 1
max = 1
max_waiters = 4
acquire_timeout = "500ms"
"""
    path = os.path.join(tmp, "poold.toml")
    with open(path, "w") as f:
        f.write(config)
    return path


def ping(sock_path, timeout=5.0):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b'{"id":"ping","op":"ping"}\n')
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            return json.loads(buf.split(b"\n")[0]).get("ok") is True
    except (OSError, ValueError):
        return False


def pg_activity():
    return int(psql(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APPLICATION}'")[0])


def run_cycle(n, rng, binary, pg_url, pg_password):
    """One start-load-stop cycle; a dict of figures, with `failures` (empty when it passed)."""
    tmp = tempfile.mkdtemp(prefix=f"poold-soak-{n}-")
    result = {"tmp": tmp, "failures": [], "sent": 0, "answered": 0, "lost": 0, "unread": 0, "dup": 0,
              "stop_ms": None, "double": rng.random() < 1 / 3, "pg_left": 0, "workers_left": 0,
              "log": os.path.join(tmp, "poold.log")}
    fail = result["failures"].append
    sock_path = os.path.join(tmp, "control.sock")
    config = write_config(tmp, pg_url, pg_password)
    for name in SQLITE_POOLS.values():
        db = sqlite3.connect(os.path.join(tmp, f"{name}.db"))
        db.executescript("CREATE TABLE a (id TEXT PRIMARY KEY); CREATE TABLE b (id TEXT PRIMARY KEY);")
        db.close()
    psql("DROP TABLE IF EXISTS soak_a, soak_b; "
         "CREATE TABLE soak_a (id text PRIMARY KEY); CREATE TABLE soak_b (id text PRIMARY KEY); "
         "ALTER TABLE soak_a OWNER TO poold; ALTER TABLE soak_b OWNER TO poold")

    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
    log = open(result["log"], "wb")
    proc = subprocess.Popen([binary, "--config", config], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=tmp)
    log.close()
    pidfd = os.pidfd_open(proc.pid)
    children = {}   # pid -> start time, every child poold had during the cycle
    exited = threading.Event()
    watching = threading.Event()

    def watch_children():
        while not exited.is_set():
            for pid in children_of(proc.pid):
                if pid not in children:
                    st = proc_start_time(pid)
                    if st:
                        children[pid] = st[0]
            watching.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_children, daemon=True)
    exit_status = None

    def has_exited(timeout):
        return bool(select.select([pidfd], [], [], max(timeout, 0))[0])

    def reap():
        nonlocal exit_status
        _, status = os.waitpid(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        exit_status = proc.returncode
        exited.set()

    clients = []
    try:
        watcher.start()
        started = time.monotonic()
        while not ping(sock_path):
            if has_exited(0.02):
                reap()
                fail(f"poold exited at start with status {exit_status}")
                return result
            if time.monotonic() - started > 30:
                fail("poold did not answer ping within 30s")
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                has_exited(10)
                reap()
                return result

        signalled = Signalled()
        for kind in KINDS:
            for i in range(CLIENTS_PER_KIND):
                clients.append(Client(n, kind, i, sock_path, random.Random(rng.random()), signalled))
        for c in clients:
            c.start()
        time.sleep(rng.uniform(0.2, 2.0))
        signalled.at = time.monotonic()
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        signalled.set()
        if result["double"]:
            if not has_exited(rng.uniform(0.02, 0.3)):
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if has_exited(signalled.at + EXIT_LIMIT - time.monotonic()):
            result["stop_ms"] = (time.monotonic() - signalled.at) * 1000
            reap()
        else:
            fail(f"poold still running {EXIT_LIMIT:.0f}s after SIGTERM: killed with SIGKILL")
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            has_exited(10)
            reap()
    finally:
        if not exited.is_set():   # the soak itself failed: never leave a poold behind
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            has_exited(10)
            reap()
        os.close(pidfd)
        watcher.join()

    if exit_status != 0:
        fail(f"exit status {exit_status}")
    for c in clients:
        c.join(timeout=CLIENT_LIMIT + 5)
        if c.is_alive():
            fail(f"client {c.name} still running after poold exited")
        if c.crash:
            fail(f"client {c.name} crashed: {c.crash}")

    # Replies: every sent request answered exactly once, with an expected code.
    ok_ids = {kind: set() for kind in (*SQLITE_POOLS, "pg")}
    err_ids = {kind: set() for kind in (*SQLITE_POOLS, "pg")}
    codes, endings, bad = {}, {}, []
    for c in clients:
        for conn in c.connections:
            endings[conn.ended] = endings.get(conn.ended, 0) + 1
            if conn.ended not in ("eof", "closed by client") and not conn.ended.startswith("connect:"):
                result["unread"] += 1
            result["sent"] += len(conn.sent)
            result["answered"] += len(conn.replies)
            result["dup"] += len(conn.duplicates)
            lost = [rid for rid in conn.sent if rid not in conn.replies]
            result["lost"] += len(lost)
            if lost:
                when = ", ".join(f"{k} {1000 * (t - signalled.at):+.0f}ms" for k, t in
                                 sorted(conn.times.items(), key=lambda kv: kv[1]))
                bad.append(f"{conn.name} ({conn.ended}): {len(lost)} lost of {len(conn.sent)} sent, "
                           f"{len(conn.replies)} answered, e.g. {lost[:5]}; relative to the first SIGTERM: {when}")
            if conn.duplicates:
                bad.append(f"{conn.name}: duplicate replies for {conn.duplicates[:5]}")
            for u in conn.unknown:
                bad.append(f"{conn.name}: reply for an unknown id: {u}")
            for rid, reply in conn.replies.items():
                code = "ok" if reply.get("ok") is True else (reply.get("error") or {}).get("code", "?")
                codes[code] = codes.get(code, 0) + 1
                if code != "ok" and code not in EXPECTED_CODES:
                    bad.append(f"{rid}: unexpected reply {json.dumps(reply)[:300]}")
                if c.kind in EXEC_POOLS and code == "ok" and reply.get("output") != conn.sent[rid]["input"]:
                    bad.append(f"{rid}: worker output {reply.get('output')!r} is not its input")
                if c.kind in ok_ids:
                    (ok_ids if code == "ok" else err_ids)[c.kind].add(rid)
    result["codes"], result["endings"] = codes, endings
    for b in bad[:20]:
        fail(b)
    if len(bad) > 20:
        fail(f"... and {len(bad) - 20} more")

    # Leaks: PostgreSQL connections, worker processes, the socket file.
    for attempt in range(41):
        left = pg_activity()
        if left == 0:
            if attempt:
                result["pg_lingered_ms"] = attempt * 50
            break
        time.sleep(0.05)
    if left:
        result["pg_left"] = left
        fail(f"{left} PostgreSQL connection(s) with application_name {APPLICATION} 2s after exit")
    for pid, start in sorted(children.items()):
        st = proc_start_time(pid)
        if st and st[0] == start:
            result["workers_left"] += 1
            fail(f"poold's child {pid} still there after exit (state {st[1]})")
    result["children_seen"] = len(children)
    if os.path.lexists(sock_path):
        fail(f"socket file {sock_path} left after exit")

    # Databases: whole transactions only, exactly those answered ok.
    def check_tables(what, ids_a, ids_b, kind):
        if ids_a != ids_b:
            fail(f"{what}: the two tables differ (only in first: {sorted(ids_a - ids_b)[:5]}, "
                 f"only in second: {sorted(ids_b - ids_a)[:5]})")
        missing = ok_ids[kind] - ids_a
        if missing:
            fail(f"{what}: {len(missing)} id(s) answered ok are missing, e.g. {sorted(missing)[:5]}")
        present = err_ids[kind] & (ids_a | ids_b)
        if present:
            fail(f"{what}: {len(present)} id(s) answered with an error are present, e.g. {sorted(present)[:5]}")
        stray = (ids_a | ids_b) - ok_ids[kind] - err_ids[kind]
        if stray:
            fail(f"{what}: {len(stray)} id(s) present that were never answered, e.g. {sorted(stray)[:5]}")

    for kind, name in SQLITE_POOLS.items():
        try:
            db = sqlite3.connect(os.path.join(tmp, f"{name}.db"))
            integrity = db.execute("PRAGMA integrity_check").fetchall()
            if integrity != [("ok",)]:
                fail(f"SQLite {name}: integrity_check: {integrity[:5]}")
            a = {r[0] for r in db.execute("SELECT id FROM a")}
            b = {r[0] for r in db.execute("SELECT id FROM b")}
            db.close()
            check_tables(f"SQLite {name}", a, b, kind)
        except sqlite3.Error as e:
            fail(f"SQLite {name}: check failed: {e}")
    check_tables("PostgreSQL", set(psql("SELECT id FROM soak_a")), set(psql("SELECT id FROM soak_b")), "pg")
    return result


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return f.readlines()[-n:]
    except OSError as e:
        return [f"(no log: {e})\n"]


def main():
    for var in ("POOLD_TEST_PG_URL", "POOLD_TEST_PG_PASSWORD", "POOLD_TEST_PG_PSQL"):
        if not os.environ.get(var):
            die(f"{var} is not set: run me as `scripts/with-postgres.sh tests/soak.py` (or `make soak`)")
    binary = poold_binary()
    if not os.access(binary, os.X_OK):
        die(f"no poold at {binary}: build it (swift build --product poold) or set POOLD_BIN")
    if not os.path.exists(ECHO_WORKER):
        die(f"no echo worker at {ECHO_WORKER}")
    # A copy, so that a rebuild during the run neither breaks a start nor mixes two binaries.
    snapshot = tempfile.mkdtemp(prefix="poold-soak-bin-")
    shutil.copy2(binary, os.path.join(snapshot, "poold"))
    try:
        return soak(os.path.join(snapshot, "poold"), binary)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def soak(binary, original):
    cycles = int(os.environ.get("CYCLES", "100"))
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"soak: {cycles} cycles, SOAK_SEED={seed}, poold {original} (a copy in {binary})", flush=True)
    rng = random.Random(seed)
    pg_url, pg_password = os.environ["POOLD_TEST_PG_URL"], os.environ["POOLD_TEST_PG_PASSWORD"]

    passed = failed = 0
    totals = {"sent": 0, "answered": 0, "lost": 0, "unread": 0, "dup": 0, "pg_left": 0, "workers_left": 0}
    codes, stops = {}, []
    for n in range(1, cycles + 1):
        try:
            r = run_cycle(n, rng, binary, pg_url, pg_password)
        except Exception as e:  # psql failing, a full disk, a bug here: this cycle failed, go on
            r = {"tmp": "-", "log": "-", "failures": [f"the soak itself failed: {type(e).__name__}: {e}"],
                 "sent": 0, "answered": 0, "lost": 0, "unread": 0, "dup": 0, "stop_ms": None,
                 "double": False, "pg_left": 0, "workers_left": 0}
        for k in totals:
            totals[k] += r[k]
        for k, v in r.get("codes", {}).items():
            codes[k] = codes.get(k, 0) + v
        if r["stop_ms"] is not None:
            stops.append(r["stop_ms"])
        stop = f"{r['stop_ms']:7.0f}ms" if r["stop_ms"] is not None else "      -  "
        verdict = "PASS" if not r["failures"] else "FAIL: " + r["failures"][0]
        print(f"cycle {n:3d}/{cycles} {'double' if r['double'] else 'single'} sent={r['sent']:4d} "
              f"answered={r['answered']:4d} lost={r['lost']} unread={r['unread']} dup={r['dup']} "
              f"stop={stop} {verdict}", flush=True)
        if r["failures"]:
            failed += 1
            for f in r["failures"][1:]:
                print(f"    {f}")
            print(f"    codes {r.get('codes')}, connection endings {r.get('endings')}")
            print(f"    kept {r['tmp']}; last lines of {r['log']}:")
            for line in tail(r["log"]):
                print(f"    | {line.rstrip()}")
            sys.stdout.flush()
        else:
            passed += 1
            shutil.rmtree(r["tmp"], ignore_errors=True)

    worst = f"{max(stops):.0f}ms" if stops else "-"
    median = f"{statistics.median(stops):.0f}ms" if stops else "-"
    print(f"totals: cycles {cycles}, requests sent {totals['sent']}, answered {totals['answered']}, "
          f"lost {totals['lost']}, unread/reset connections {totals['unread']}, duplicates {totals['dup']}, "
          f"leaked {totals['pg_left'] + totals['workers_left']} ({totals['pg_left']} PostgreSQL connections, "
          f"{totals['workers_left']} workers), worst stop {worst}, median stop {median}")
    print(f"replies by code: {dict(sorted(codes.items()))}; SOAK_SEED={seed}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

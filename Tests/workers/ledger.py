"""Ledger worker for the contention and unwinding tests: like echo.py, but it first appends each
job's input to the file named by $POOLD_TEST_LEDGER (one JSON line per job), so that a test can
tell which jobs ever reached a worker.

Input {"child": true} then starts a child process (`sleep 600`, in the worker's own process
group) and appends {"child_pid": N} to the ledger; {"daemon": true} starts one that leaves the
worker (setsid and a double fork, stdio on /dev/null) and appends {"daemon_pid": N};
{"sleep": s} then sleeps s seconds.
"""
import json, os, subprocess, sys, time

ledger = os.environ["POOLD_TEST_LEDGER"]

def record(value):
    with open(ledger, "a") as f:
        f.write(json.dumps(value) + "\n")

for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    data = job.get("input")
    record(data)
    if isinstance(data, dict) and data.get("child") is True:
        child = subprocess.Popen(["sleep", "600"])
        record({"child_pid": child.pid, "worker_pid": os.getpid()})
    if isinstance(data, dict) and data.get("daemon") is True:
        r, w = os.pipe()
        first = os.fork()
        if first == 0:
            os.setsid()
            if os.fork() == 0:
                os.close(r)
                os.write(w, str(os.getpid()).encode())
                os.close(w)
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execvp("sleep", ["sleep", "600"])
            os._exit(0)
        os.close(w)
        os.waitpid(first, 0)
        daemon_pid = int(os.read(r, 32))
        os.close(r)
        record({"daemon_pid": daemon_pid, "worker_pid": os.getpid()})
    if isinstance(data, dict) and "sleep" in data:
        time.sleep(data["sleep"])
    sys.stdout.write(json.dumps({"id": job["id"], "output": data}) + "\n")
    sys.stdout.flush()

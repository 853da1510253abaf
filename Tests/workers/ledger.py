"""Ledger worker for the contention and unwinding tests: like echo.py, but it first appends each
job's input to the file named by $POOLD_TEST_LEDGER (one JSON line per job), so that a test can
tell which jobs ever reached a worker.

Input {"child": true} then starts a child process (`sleep 600`, in the worker's own process
group) and appends {"child_pid": N} to the ledger; {"sleep": s} then sleeps s seconds.
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
    if isinstance(data, dict) and "sleep" in data:
        time.sleep(data["sleep"])
    sys.stdout.write(json.dumps({"id": job["id"], "output": data}) + "\n")
    sys.stdout.flush()

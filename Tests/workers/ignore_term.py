"""A worker that ignores SIGTERM and sleeps 60 s on any job: only SIGKILL stops it."""
import json, signal, sys, time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    time.sleep(60)
    sys.stdout.write(json.dumps({"id": job["id"], "output": "slept"}) + "\n")
    sys.stdout.flush()

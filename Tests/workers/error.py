"""A worker that answers every job with the error "boom" and stays alive.

Input {"pid": true} is answered normally with {"pid": ...}, so a test can see that the
same worker process is still in service after an error.
"""
import json, os, sys

for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    if job.get("input") == {"pid": True}:
        answer = {"id": job["id"], "output": {"pid": os.getpid()}}
    else:
        answer = {"id": job["id"], "error": "boom"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()

"""A worker that answers with the wrong id (the job's id + 1)."""
import json, sys

for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    sys.stdout.write(json.dumps({"id": job["id"] + 1, "output": job.get("input")}) + "\n")
    sys.stdout.flush()

"""A worker whose answer line is over 2 MiB: its output is a string of 2 MiB."""
import json, sys

BIG = "x" * (2 * 1024 * 1024)
for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    sys.stdout.write(json.dumps({"id": job["id"], "output": BIG}) + "\n")
    sys.stdout.flush()

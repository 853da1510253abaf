"""A worker that writes 20000 lines to stderr on each job, then answers normally (output = input)."""
import json, sys

for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    for n in range(20000):
        sys.stderr.write("chatty-stderr-line %05d\n" % n)
    sys.stderr.flush()
    sys.stdout.write(json.dumps({"id": job["id"], "output": job.get("input")}) + "\n")
    sys.stdout.flush()

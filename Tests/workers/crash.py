"""A worker that dies mid-job: killed by SIGKILL if the input is "signal", else exit status 3."""
import json, os, signal, sys

for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    sys.stderr.write("about to crash\n")
    sys.stderr.flush()
    if job.get("input") == "signal":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(3)

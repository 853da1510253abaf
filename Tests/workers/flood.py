"""A worker that writes stderr flat out from the moment it starts (short lines, as fast as poold
reads them) and otherwise echoes like echo.py: for the test that a flooding worker does not
hold up poold's event loop."""
import json, os, sys, threading

def flood():
    chunk = (b"flood-stderr-line " * 4 + b"\n") * 2000
    while True:
        os.write(2, chunk)

threading.Thread(target=flood, daemon=True).start()
for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    sys.stdout.write(json.dumps({"id": job["id"], "output": job.get("input")}) + "\n")
    sys.stdout.flush()

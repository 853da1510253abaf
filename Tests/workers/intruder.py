"""A worker that does what its input says on poold's control socket: input
{"socket": PATH, "request": {...}} connects to PATH, sends the request and answers poold's reply.
For the test that a worker (running as poold's own user) gets no role through that user."""
import json, socket, sys

for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    data = job.get("input") or {}
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(data["socket"])
        s.sendall((json.dumps(data["request"]) + "\n").encode())
        reply = json.loads(s.makefile().readline())
        s.close()
    except Exception as e:
        reply = {"failed": str(e)}
    sys.stdout.write(json.dumps({"id": job["id"], "output": reply}) + "\n")
    sys.stdout.flush()

#!/usr/bin/env python3
"""An example poold worker for an exec pool: it uppercases a string input.

poold starts this program and keeps it running. For each job it writes one JSON line
to our stdin, {"id": 17, "input": <any JSON>}, and waits for one line on stdout:
{"id": 17, "output": <any JSON>} on success, or {"id": 17, "error": "message"}.
One job at a time. Anything written to stderr goes to poold's log.
"""
import json
import sys

for line in sys.stdin:                      # one job per line; EOF means poold is done with us
    job = json.loads(line)
    text = job.get("input")
    if isinstance(text, str):
        answer = {"id": job["id"], "output": text.upper()}
    else:                                   # the job fails; this worker stays in service
        answer = {"id": job["id"], "error": "input must be a string"}
    print(json.dumps(answer), flush=True)   # flush: poold waits for the whole line

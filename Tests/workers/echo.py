"""Echo worker for the exec-pool tests: the output is the input.

Input {"sleep": seconds} sleeps first; input {"pid": true} (possibly with "sleep") answers
{"pid": ..., "cwd": ..., "env": $POOLD_TEST_VAR} instead.
"""
import json, os, sys, time

for line in sys.stdin:
    if not line.strip():
        continue
    job = json.loads(line)
    data = job.get("input")
    if isinstance(data, dict) and "sleep" in data:
        time.sleep(data["sleep"])
    if isinstance(data, dict) and data.get("pid") is True:
        data = {"pid": os.getpid(), "cwd": os.getcwd(), "env": os.environ.get("POOLD_TEST_VAR")}
    sys.stdout.write(json.dumps({"id": job["id"], "output": data}) + "\n")
    sys.stdout.flush()

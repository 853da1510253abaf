"""Echo worker for the exec-pool tests: the output is the input.

Input {"sleep": seconds} sleeps first; input {"pid": true} (possibly with "sleep") answers
{"pid": ..., "cwd": ..., "env": $POOLD_TEST_VAR} instead; input {"envelope": true} answers
the request's durable-queue fields, {"job_id": ..., "attempt": ...}; input {"fail": "why"}
answers an error.
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
    if isinstance(data, dict) and data.get("envelope") is True:
        data = {"job_id": job.get("job_id"), "attempt": job.get("attempt")}
    if isinstance(data, dict) and "fail" in data:
        sys.stdout.write(json.dumps({"id": job["id"], "error": data["fail"]}) + "\n")
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({"id": job["id"], "output": data}) + "\n")
    sys.stdout.flush()

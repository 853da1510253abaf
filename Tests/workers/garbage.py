"""A worker that answers every job with a line that is not JSON."""
import sys

for line in sys.stdin:
    if not line.strip():
        continue
    sys.stdout.write("this is not json\n")
    sys.stdout.flush()

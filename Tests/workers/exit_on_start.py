"""A worker that cannot start: it says why on stderr and exits 1 at once."""
import sys

sys.stderr.write("cannot start: missing settings\n")
sys.stderr.flush()
sys.exit(1)

#!/usr/bin/env python3
"""Runs `poolctl top` on a pseudo-terminal, as a user at a terminal would, for TopTests.

usage: pty_top.py STOP COLUMNS [RESIZE_TO] -- POOLCTL ARG...

STOP is how top is told to stop once it has drawn twice: "q" or "ctrl-c" (typed),
"sigint" or "sigterm" (sent to it), or "daemon-gone:PID" (SIGTERM to that poold). With RESIZE_TO, the window is first narrowed to that many
columns, and top must redraw within it. Prints one JSON object: top's exit status, whether
it switched the terminal to raw mode while running and restored the exact mode it found, and
facts about what it wrote.
"""
import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def screen_lines(data):
    """The lines top drew, without escapes: a cursor-home starts a frame, so a line too."""
    return [ESCAPE.sub(b"", line).rstrip(b"\r").decode("utf-8", "replace") for line in data.replace(b"\x1b[H", b"\n").split(b"\n")]


def main():
    split = sys.argv.index("--")
    options, command = sys.argv[1:split], sys.argv[split + 1:]
    stop, columns = options[0], int(options[1])
    resize = int(options[2]) if len(options) > 2 else None

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    before = termios.tcgetattr(slave)

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    child = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
    output = bytearray()

    def read_until(done, seconds):
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    output.extend(os.read(master, 65536))
                except OSError:
                    return done()
        return done()

    def frames():
        return output.count(b"\x1b[H")

    drawn = read_until(lambda: frames() >= 2, 30)
    during = termios.tcgetattr(slave)
    raw = not (during[3] & (termios.ICANON | termios.ECHO | termios.ISIG))

    narrow_lines = None
    if resize is not None and drawn:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, resize, 0, 0))
        start = len(output)
        read_until(lambda: output.count(b"\x1b[H", start) >= 3, 30)
        # A frame drawn once the resize was surely seen (the first after it may have been on its
        # way already): the one between the last two cursor-homes.
        homes = [m.start() for m in re.finditer(re.escape(b"\x1b[H"), bytes(output[start:]))]
        after = bytes(output[start + homes[-2]:start + homes[-1]]) if len(homes) >= 3 else b""
        narrow_lines = screen_lines(after)

    if stop == "q":
        os.write(master, b"q")
    elif stop == "ctrl-c":
        os.write(master, b"\x03")
    elif stop == "sigint":
        child.send_signal(signal.SIGINT)
    elif stop == "sigterm":
        child.send_signal(signal.SIGTERM)
    elif stop.startswith("daemon-gone:"):
        os.kill(int(stop.split(":", 1)[1]), signal.SIGTERM)
    try:
        status = child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        status = child.wait()
    # What it wrote last: read until the pty is quiet.
    read_until(lambda: not select.select([master], [], [], 0.3)[0], 5)
    after = termios.tcgetattr(slave)

    text = bytes(output)
    lines = screen_lines(text)
    print(json.dumps({
        "status": status,
        "drawn": drawn,
        "raw_while_running": raw,
        "restored": after == before,
        "entered_screen": b"\x1b[?1049h" in text,
        "ends_leaving_screen": text.endswith(b"\x1b[?1049l"),
        "longest_line": max(len(line) for line in lines),
        "longest_after_resize": max((len(line) for line in narrow_lines), default=-1) if narrow_lines else None,
        "pools_after_resize": sum(1 for line in narrow_lines or [] if line.startswith(("main", "side"))),
        "shows_pools": b"POOL" in text,
        "after_screen": text.rsplit(b"\x1b[?1049l", 1)[-1].decode("utf-8", "replace") if b"\x1b[?1049l" in text else None,
        "tail": text[-200:].decode("utf-8", "replace"),
    }))


if __name__ == "__main__":
    main()

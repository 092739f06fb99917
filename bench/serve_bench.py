"""Receiving speed of ``named-senderr serve``: Forward frames in, each waiting for its ack, events to stdout.

Starts ``serve`` as a child process (stdout to /dev/null, flat records) and sends
``--frames`` Forward-mode frames of 2,000 distinct send errors each on one
connection, each only after the previous one was acknowledged, as Fluent Bit
does with ``Require_ack_response``. Reports events/s from the first frame to the
last ack and serve's CPU seconds over that span; every ack is checked against
its chunk. Extra arguments go to serve (e.g. ``--rollup 60s``, ``--queue-dir``).

    python bench/serve_bench.py --frames 100
    python bench/serve_bench.py --frames 100 -- --queue-dir /tmp/q --to stdout:?format=flat
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import struct
import subprocess
import time
from pathlib import Path

import msgpack

import timing

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = 2000
EVENT_TIME = msgpack.ExtType(0, struct.pack(">II", 1_700_000_000, 0))


def frame(number: int) -> bytes:
    lines = [
        f"21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.{number % 250 + 1}#{1024 + i} (f{number}.example): "
        "error sending response: would block"
        for i in range(ENTRIES)
    ]
    return msgpack.packb(["named", [[EVENT_TIME, {"log": line}] for line in lines], {"chunk": f"c{number}"}])


def acknowledged(sock: socket.socket, chunk: str) -> None:
    unpacker = msgpack.Unpacker(raw=False)
    while data := sock.recv(4096):
        unpacker.feed(data)
        for answer in unpacker:
            if answer != {"ack": chunk}:
                raise SystemExit(f"expected the ack of {chunk}, got {answer!r}")
            return
    raise SystemExit(f"serve closed the connection without acknowledging {chunk}")


def measure(frames: int, serve_args: list[str]) -> tuple[int, float, float]:
    """(events, seconds from the first frame to the last ack, serve's CPU seconds over that span)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugin")}
    command = [*timing.NAMED_SENDERR, "serve", "--forward", "127.0.0.1:0", "--format", "flat"]
    proc = subprocess.Popen([*command, *serve_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stderr is not None
        line = b""
        while b"listening" not in line:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit("serve ended before it listened")
        port = int(re.search(rb"on \S+:(\d+)", line).group(1))  # type: ignore[union-attr]
        packed = [frame(number) for number in range(frames)]
        before, started = timing.proc_cpu(proc.pid), time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for number, data in enumerate(packed):
                sock.sendall(data)
                acknowledged(sock, f"c{number}")
        wall, cpu = time.perf_counter() - started, timing.proc_cpu(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stderr.close()  # type: ignore[union-attr]
    return frames * ENTRIES, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("serve_args", nargs="*", help="after --: more arguments for serve")
    args = parser.parse_args()
    events, wall, cpu = measure(args.frames, args.serve_args)
    print(f"serve: {events:,} events in {wall:.2f} s ({events / wall:,.0f} events/s), "
          f"{cpu:.2f} CPU s ({events / cpu:,.0f} events per CPU second)")  # fmt: skip


if __name__ == "__main__":
    main()

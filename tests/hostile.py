"""Hostile peers for the receiver tests: a capped ``serve``/``listen`` process to attack, and the attacks' bytes.

The child runs under an address-space cap (RLIMIT_AS), so an unbounded
allocation shows as a MemoryError on its stderr instead of a slow machine; its
peak resident memory is VmHWM from /proc/PID/status, read before and after an
attack.
"""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from typing import Any

import msgpack

from named_senderr.protocol.fluent_forward import encode_ping
from tests import test_fluent_forward_wire as w
from tests.polling import wait_until

MIB = 1024 * 1024
ADDRESS_SPACE = 1024 * MIB  # main's serve hit MemoryError under this cap from one 65 KB frame
WAIT = 15.0
LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#53 (example.com): error sending response: would block"


class Attacked:
    """``named-senderr COMMAND ARGS`` as a child with capped address space (and open files, if given)."""

    def __init__(self, *args: str, open_files: int | None = None, ready: str = r"on 127\.0\.0\.1:(\d+)") -> None:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        command = [sys.executable, "-m", "named_senderr", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit)
        self.lines: list[bytes] = []
        self.stderr = b""
        threading.Thread(target=self._stdout, daemon=True).start()
        threading.Thread(target=self._stderr, daemon=True).start()
        wait_until(lambda: re.search(ready.encode(), self.stderr) or self.proc.poll() is not None)
        self.port = int(re.search(ready.encode(), self.stderr).group(1))
        found = re.search(rb"metrics on (http://127\.0\.0\.1:\d+)/metrics", self.stderr)
        self.metrics_url = found.group(1).decode() if found else None

    def _stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def _stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(65536):
            self.stderr += chunk

    def status(self, key: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as rows:
            return next(int(row.split()[1]) for row in rows if row.startswith(f"{key}:"))

    def peak_rss_mb(self) -> float:
        return self.status("VmHWM") / 1024

    def metrics(self) -> dict[str, float]:
        assert self.metrics_url, "start serve with --metrics 127.0.0.1:0"
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=WAIT) as answer:
            text = answer.read().decode()
        return {name: float(value) for name, value in re.findall(r"^(\S+) (\S+)$", text, re.MULTILINE)}

    def counter(self, name: str) -> float:
        return self.metrics()[f"named_senderr_forward_{name}_total"]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT)
        finally:
            self.proc.kill()


def measured(attack: str, base: float, peak: float) -> float:
    """The peak RSS an attack added, printed for the record (pytest -s)."""
    print(f"\n{attack}: peak RSS {peak:.1f} MB, {peak - base:+.1f} MB over {base:.1f} MB before the attack")
    return peak - base


def ack_seconds(port: int, shared_key: str | None = None) -> float:
    """How long a good client waits for the ack of a one-entry frame (raises if it never comes)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        unpacker = msgpack.Unpacker(raw=True)
        if shared_key is not None:
            helo = _answer(sock, unpacker)
            sock.sendall(encode_ping("good", b"0123456789abcdef", helo[1][b"nonce"], shared_key))
            assert _answer(sock, unpacker)[1] is True, "PONG refused the good client"
        sock.sendall(w.message("t", w.uint(1_700_000_000), w.record(log=LINE), w.chunk_option("good")))
        assert _answer(sock, unpacker) == {b"ack": b"good"}
    return time.monotonic() - started


def _answer(sock: socket.socket, unpacker: msgpack.Unpacker) -> Any:
    while True:
        for obj in unpacker:
            return obj
        data = sock.recv(4096)
        assert data, "the server closed a good client's connection"
        unpacker.feed(data)


def send_in_background(port: int, data: bytes) -> socket.socket:
    """Connect and push ``data`` from a thread (the server may close on us halfway: that is the point)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)

    def push() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)

    threading.Thread(target=push, daemon=True).start()
    return sock


def packed(blob: bytes, **option: str) -> bytes:
    """PackedForward [tag, bin32 entries, option] (gzip'd entries when option says so)."""
    pairs = tuple((w.s(key), w.s(value)) for key, value in option.items())
    return w.array(w.s("t"), w.bin32(blob), w.fmap(*pairs))


def gzip_bomb(mib: int) -> bytes:
    """CompressedPackedForward of ``mib`` MiB of empty arrays: about 1 KB on the wire per MiB it expands to."""
    compressor = zlib.compressobj(9, wbits=31)
    zeros = b"\x90" * MIB
    blob = b"".join(compressor.compress(zeros) for _ in range(mib)) + compressor.flush()
    return packed(blob, compressed="gzip", chunk="bomb")


def unfinished_frame(announced: int, sent: int) -> bytes:
    """The start of a PackedForward frame announcing ``announced`` bytes of entries, of which ``sent`` follow."""
    return b"\x93" + w.s("t") + b"\xc6" + struct.pack(">I", announced) + b"\x00" * sent

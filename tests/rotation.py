"""A log writer that rotates on request, and a follower stopped for real across its rotation.

The writer is its own process, as named is: it appends numbered send-error lines at a steady
rate and rotates (rename and create, or copytruncate) when it gets SIGUSR1, between two writes,
so the rotation itself loses nothing. The follower (``tail`` or ``ship --follow``) is stopped
with a real signal before the rotation and started again after it; every line number it printed,
across both runs, is counted. Run as a script it prints the figures:

    python -m tests.rotation --lines 200000 --rate 6000 --down 1 --mode rename --via tail
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.polling import wait_until

LINE = "21-Nov-2026 04:47:35.739 client @0x7f04 192.0.2.7#5353 (l{n}.example): error sending response: would block\n"
NUMBER = re.compile(rb'"qname":"l(\d+)\.example"')
READY = LINE.replace("l{n}", "ready")  # not numbered: written until the follower prints one
REPORT_EVERY = 500  # lines between the writer's progress reports
MODES = ("rename", "copytruncate")


def write(log: Path, lines: int, rate: float, mode: str) -> None:
    """The writer process: ``lines`` lines at ``rate`` lines/s, one rotation on SIGUSR1."""
    rotate = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: rotate.set())
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    started = time.monotonic()
    chunk = max(1, int(rate / 100))
    for first in range(0, lines, chunk):
        if rotate.is_set():
            rotate.clear()
            fd = _rotate(log, fd, mode)
            print(f"rotated {first}", flush=True)
        last = min(first + chunk, lines)
        os.write(fd, "".join(LINE.format(n=n) for n in range(first, last)).encode())
        if last // REPORT_EVERY != first // REPORT_EVERY or last == lines:
            print(f"written {last}", flush=True)
        ahead = started + last / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    os.close(fd)


def _rotate(log: Path, fd: int, mode: str) -> int:
    if mode == "rename":
        log.rename(log.with_name(log.name + ".0"))
        os.close(fd)
        return os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    shutil.copyfile(log, log.with_name(log.name + ".1"))
    os.ftruncate(fd, 0)
    return fd


class Writer:
    """The writer process and what it reported: lines written, and where it rotated."""

    def __init__(self, log: Path, lines: int, rate: float, mode: str) -> None:
        self.lines = lines
        self.written = 0
        self.rotated_at: int | None = None
        cmd = [sys.executable, "-m", "tests.rotation", "write", str(log), str(lines), str(rate), mode]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.proc.stdout is not None
        for report in self.proc.stdout:
            what, count = report.split()
            if what == b"rotated":
                self.rotated_at = int(count)
            else:
                self.written = int(count)

    def rotate(self) -> int:
        """Rotate now; the line number the new file (or the truncated one) starts with."""
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: self.rotated_at is not None)
        assert self.rotated_at is not None
        return self.rotated_at

    def wait(self, timeout: float) -> None:
        self.proc.wait(timeout)
        wait_until(lambda: self.written == self.lines)


class Output:
    """The follower's stdout, kept across its runs, read as it grows: every line number printed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()
        self.numbers: list[int] = []
        self.ready = False
        self._read = 0

    def refresh(self) -> Output:
        with self.path.open("rb") as stream:
            stream.seek(self._read)
            data = stream.read()
        whole = data[: data.rfind(b"\n") + 1]
        self._read += len(whole)
        self.numbers += [int(n) for n in NUMBER.findall(whole)]
        self.ready = self.ready or b'"qname":"ready.example"' in whole
        return self

    def distinct(self) -> int:
        return len(set(self.refresh().numbers))


def follower_command(via: str, glob: str, state: Path) -> list[str]:
    """``tail`` or ``ship --follow`` on ``glob``, flat NDJSON on stdout, its state under ``state``."""
    base = [sys.executable, "-m", "named_senderr"]
    if via == "tail":
        return [*base, "tail", glob, "--checkpoint", str(state / "tail.json"), "--format", "flat",
                "--poll-interval", "0.05", "--rotate-wait", "1"]  # fmt: skip
    return [*base, "ship", "--follow", glob, "--queue-dir", str(state / "queue"), "--to", "stdout:?format=flat",
            "--no-progress", "--shutdown-timeout", "30"]  # fmt: skip


class Follower:
    """``tail`` or ``ship --follow`` as a real process: started, stopped by a signal, started again."""

    def __init__(self, command: list[str], out: Output, stderr: Path) -> None:
        self.command = command
        self.out = out
        self.stderr = stderr
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.out.path.open("ab") as out, self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=err)

    def stop(self, signum: int, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout)


@dataclass(frozen=True)
class Figures:
    written: int
    printed: int
    distinct: int

    @property
    def lost(self) -> int:
        return self.written - self.distinct

    @property
    def duplicated(self) -> int:
        return self.printed - self.distinct

    def __str__(self) -> str:
        return f"written {self.written:,}, printed {self.printed:,}, lost {self.lost:,}, duplicated {self.duplicated:,}"


def stopped_across_rotation(
    tmp: Path, via: str, mode: str, lines: int, rate: float, down: float, signum: int, glob: str = "named.log"
) -> Figures:
    """Follow a log, stop the follower, rotate, start it again after ``down`` s of writing."""
    log = tmp / "named.log"
    out = Output(tmp / "out.ndjson")
    follower = Follower(follower_command(via, str(tmp / glob), tmp), out, tmp / "follower.stderr")
    log.touch()
    follower.start()
    wait_ready(log, out)  # so the writer's first line comes after the follower's first look, not before its end
    writer = Writer(log, lines, rate, mode)
    try:
        wait_until(lambda: out.distinct() >= lines // 4, timeout=lines / rate + 30)
        follower.stop(signum)
        stopped_at = writer.written
        wait_until(lambda: writer.written >= stopped_at + down * rate / 2, timeout=down + 30)
        writer.rotate()  # halfway: lines go to the old file and to the new one while the follower is down
        wait_until(lambda: writer.written >= min(lines, stopped_at + down * rate), timeout=down + 30)
        follower.start()
        writer.wait(timeout=lines / rate + 60)
        caught_up(out, lines)
    finally:
        writer.proc.kill()
        if follower.proc is not None and follower.proc.poll() is None:
            follower.stop(signal.SIGTERM)
    return Figures(lines, len(out.refresh().numbers), out.distinct())


def wait_ready(log: Path, out: Output) -> None:
    """Until the follower printed a line appended after it started: it is past its first look at the files."""

    def printed() -> bool:
        with log.open("a") as stream:
            stream.write(READY)
        return out.refresh().ready

    wait_until(printed, timeout=60)


def caught_up(out: Output, lines: int, quiet: float = 5.0) -> None:
    """Until every line is printed, or nothing new came for ``quiet`` s (what is missing then is lost)."""
    last = [out.distinct(), time.monotonic()]

    def settled() -> bool:
        now = out.distinct()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return now == lines or time.monotonic() - last[1] > quiet

    wait_until(settled, timeout=600)


def main() -> None:
    if sys.argv[1:2] == ["write"]:
        log, lines, rate, mode = sys.argv[2:]
        write(Path(log), int(lines), float(rate), mode)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=6000, help="lines written per second")
    parser.add_argument("--down", type=float, default=1.0, help="seconds of writing while the follower is stopped")
    parser.add_argument("--mode", choices=MODES, default="rename")
    parser.add_argument("--via", choices=("tail", "ship"), default="tail")
    parser.add_argument("--signal", choices=("KILL", "TERM"), default="KILL")
    parser.add_argument("--glob", default="named.log", help="relative to the scratch directory")
    parser.add_argument("--dir", type=Path, required=True, help="an empty scratch directory")
    args = parser.parse_args()
    signum = getattr(signal, f"SIG{args.signal}")
    figures = stopped_across_rotation(
        args.dir, args.via, args.mode, args.lines, args.rate, args.down, signum, args.glob
    )
    print(f"{args.via} {args.mode} glob {args.glob!r} stopped by SIG{args.signal} for {args.down} s: {figures}")


if __name__ == "__main__":
    main()

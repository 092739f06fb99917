"""Whole-process timing shared by the bench scripts.

CPU time (user + sys) and peak RSS come from the kernel for the one child
process (os.wait4), Python start-up included; a server's CPU comes from /proc.
Runs are interleaved, best of several: on a shared machine the minimum is the
figure least disturbed by the neighbours, the median says how much they disturbed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
# The command users run, installed beside this Python (``python -m`` would add runpy's start-up).
_SCRIPT = Path(sys.executable).with_name("named-senderr")
NAMED_SENDERR = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "named_senderr"]


@dataclass(frozen=True)
class Run:
    """One finished child process."""

    wall: float
    cpu: float
    rss_mb: float
    stderr: str


def run(
    argv: Sequence[str],
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
) -> Run:
    """Run ``argv`` to its end; exit on a status outside ``ok``.

    GNU grep stops at the first match when stdout is /dev/null: give it a file.
    """
    started = time.perf_counter()
    child = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env)
    assert child.stderr is not None
    stderr = child.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    if child.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {child.returncode}:\n{stderr[-3000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stderr)


@dataclass(frozen=True)
class Best:
    """Minimum and median of several runs of one command."""

    runs: tuple[Run, ...]

    @property
    def wall(self) -> float:
        return min(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return min(r.cpu for r in self.runs)

    @property
    def wall_median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def cpu_median(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    @property
    def rss_mb(self) -> float:
        return max(r.rss_mb for r in self.runs)


def interleaved(commands: dict[str, Callable[[], Run]], repeats: int) -> dict[str, Best]:
    """Each command ``repeats`` times, taking turns, so that a busy spell hits them all alike."""
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(command())
    return {name: Best(tuple(done)) for name, done in runs.items()}


def proc_cpu(pid: int) -> float:
    """CPU seconds so far of one running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu(leader: int) -> float:
    """CPU seconds so far of every process in ``leader``'s process group (the JVM launchers fork)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == leader:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def generated_log(directory: Path, lines: int, error_rate: float, seed: int = 53) -> Path:
    """A named log from generate_log.py, made once per (lines, rate, seed) and kept in ``directory``."""
    path = directory / f"named-{lines}-{error_rate}-{seed}.log"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        print(f"generating {path.name} ({lines:,} lines, {error_rate:.0%} send errors) ...", file=sys.stderr)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        generate = [sys.executable, str(HERE / "generate_log.py"), "--lines", str(lines)]
        subprocess.run([*generate, "--error-rate", str(error_rate), "--seed", str(seed), "-o", str(tmp)], check=True)
        tmp.replace(path)
    return path


def count_lines(stream: IO[bytes]) -> int:
    stream.seek(0)
    return sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))

"""A real full disk for the tests: a small tmpfs the test mounts itself (root only; skipped elsewhere, with why)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

BLOCK = 64 * 1024


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """``mount -t tmpfs -o size=SIZE tmpfs PATH`` for the duration of the block."""
    if os.geteuid() != 0:
        pytest.skip("a disk-full test mounts its own tmpfs, which needs root (run the suite as root, e.g. in CI)")
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with a ballast file until the kernel says ENOSPC, then free ``leave`` bytes of it."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(os.statvfs(disk).f_blocks * os.statvfs(disk).f_frsize // BLOCK + 2):  # bounded
            os.write(fd, b"\xa5" * BLOCK)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    if leave:
        os.truncate(ballast, max(0, ballast.stat().st_size - leave))
    return ballast


def free_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize

"""The queue directory's files, never opened through a planted link.

The directory itself must not be a symbolic link, and the lock, the segments
and the cursor file's temp copy are opened with O_NOFOLLOW (the temp copy with
a random name and O_EXCL, as ``tempfile`` makes it), so a link planted in a
shared directory cannot make the queue write someone else's file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path

from named_senderr.errors import ConfigError

CURSORS = "cursors.json"
SUFFIX = ".seg"
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC

Position = tuple[int, int]  # (segment number, byte offset in it)


def lock_dir(directory: Path) -> int:
    """Create ``directory`` if need be and take its lock (the lock's file descriptor); clear temp leftovers."""
    if directory.is_symlink():
        raise ConfigError(
            f"queue dir {directory} is a symbolic link (to {os.readlink(directory)}); a planted link would "
            f"send the queue elsewhere: give the real directory, --queue-dir {directory.resolve()}"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"queue dir {directory}: its lock file is a symbolic link; remove {directory / 'lock'}"
            ) from None
        raise ConfigError(f"queue dir {directory}: {exc.strerror}; choose a writable directory") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise ConfigError(
            f"queue dir {directory} is in use by another named-senderr; give each process its own --queue-dir"
        ) from None
    for leftover in directory.glob(f".{CURSORS}.*.tmp"):  # a crash between writing and renaming
        leftover.unlink(missing_ok=True)
    return lock


def segment_numbers(directory: Path) -> list[int]:
    paths = [p for p in directory.glob(f"*{SUFFIX}") if p.stem.isdigit()]
    for path in paths:
        if path.is_symlink():
            raise ConfigError(f"queue dir {directory}: segment {path.name} is a symbolic link; remove it")
    return sorted(int(p.stem) for p in paths)


def segment_name(seq: int) -> str:
    return f"{seq:012d}{SUFFIX}"


def open_segment(path: Path, flags: int) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | NOFOLLOW | flags, 0o644)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_segment(path: Path, offset: int, limit: int, size: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(min(size, limit - offset))
    except FileNotFoundError:
        return b""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_cursors(directory: Path) -> dict[str, Position]:
    try:
        document = json.loads((directory / CURSORS).read_text(encoding="utf-8"))
        return {name: (int(p[0]), int(p[1])) for name, p in document["cursors"].items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ConfigError(
            f"{directory / CURSORS}: not a named-senderr queue cursor file ({exc}); "
            "delete the queue directory to start over (its events would then be lost)"
        ) from None


def save_cursors(directory: Path, cursors: dict[str, Position]) -> None:
    """A fresh temp file, fsync, rename: the old cursors or the new ones, never half (raises OSError)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{CURSORS}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "cursors": {name: list(p) for name, p in cursors.items()}}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / CURSORS)
    except BaseException:
        os.unlink(tmp)
        raise

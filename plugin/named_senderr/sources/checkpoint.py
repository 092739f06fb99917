"""Where the tail stopped in each file, kept across restarts.

A file is known by device and inode, which survive a rename but can be reused
by the file system after a delete; so each entry also keeps a fingerprint (a
hash of the first bytes already read): a reused inode with other content reads
from its start instead of from a stranger's offset. The globs followed are
kept too, so that a restart knows which files were created while it was down.
The file is replaced atomically (a temp file of a name no one can guess,
fsync, rename), so a crash leaves the old or the new checkpoint, never half of
one, and a link planted in the directory is never written through.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from named_senderr.errors import InputError

FINGERPRINT_BYTES = 1024
VERSION = 1


@dataclass(frozen=True, slots=True)
class Position:
    """How far one file has been taken: ``offset`` bytes, the first of them fingerprinted."""

    path: str
    dev: int
    ino: int
    offset: int
    fingerprint: str
    fingerprint_size: int

    @property
    def key(self) -> tuple[int, int]:
        return self.dev, self.ino


def fingerprint(fd: int, size: int) -> tuple[str, int]:
    """Hash of the first ``min(size, FINGERPRINT_BYTES)`` bytes of the open file ``fd``."""
    wanted = min(size, FINGERPRINT_BYTES)
    head = os.pread(fd, wanted, 0) if wanted else b""
    return hashlib.sha256(head).hexdigest(), len(head)


def matches(fd: int, position: Position) -> bool:
    """True when the open file still starts with the bytes ``position`` fingerprinted."""
    return fingerprint(fd, position.fingerprint_size) == (position.fingerprint, position.fingerprint_size)


def make_directory(path: Path, warn: Callable[[str], None]) -> None:
    """Create the checkpoint's directory on a fresh host, saying so, rather than fail at the first save."""
    if path.parent.is_dir():
        return
    try:
        path.parent.mkdir(parents=True, mode=0o755)
    except OSError as exc:
        raise InputError(
            f"{path}: cannot create the checkpoint's directory {path.parent}: {exc.strerror}; "
            "create it, or choose a --checkpoint path in a writable directory"
        ) from exc
    warn(f"created {path.parent} for the checkpoint {path.name}")


class Checkpoint:
    """The saved positions, keyed by (device, inode); ``path`` None keeps them in memory only."""

    def __init__(self, path: Path | None, allow_symlink: bool = False) -> None:
        self.path = _refuse_symlink(path, allow_symlink) if path else None
        if self.path is not None:
            _remove_stale_temps(self.path)
        self.found = False  # a checkpoint was there: this is a restart
        self.globs: tuple[str, ...] | None = None  # what the saved run followed; None when not recorded
        self.positions: dict[tuple[int, int], Position] = self._load() if self.path else {}

    def get(self, dev: int, ino: int) -> Position | None:
        return self.positions.get((dev, ino))

    def replace(self, positions: list[Position], globs: tuple[str, ...]) -> None:
        """Make ``positions`` (of the files ``globs`` matched) the whole checkpoint and save it."""
        self.positions = {p.key: p for p in positions}
        self.globs = globs
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        document = {"version": VERSION, "globs": self.globs, "files": [asdict(p) for p in self.positions.values()]}
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with open(fd, "w", encoding="utf-8") as stream:
                json.dump(document, stream, indent=1)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise InputError(
                f"{self.path}: cannot save the checkpoint: {exc.strerror}; "
                "choose a --checkpoint path in a writable directory"
            ) from exc

    def _load(self) -> dict[tuple[int, int], Position]:
        assert self.path is not None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read the checkpoint: {exc.strerror}") from exc
        try:
            document = json.loads(text)
            if document.get("version") != VERSION:
                raise ValueError(f"version {document.get('version')!r}, expected {VERSION}")
            positions = [Position(**entry) for entry in document["files"]]
            globs = document.get("globs")
            if globs is not None and not (isinstance(globs, list) and all(isinstance(g, str) for g in globs)):
                raise ValueError(f"globs {globs!r} is not a list of strings")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(
                f"{self.path}: not a named-senderr checkpoint ({exc}); delete it to start over "
                "(files are then read from their end, or from the start with --read-from-head)"
            ) from exc
        self.found = True
        self.globs = None if globs is None else tuple(globs)
        return {p.key: p for p in positions}


def _remove_stale_temps(path: Path) -> None:
    """Temp files a kill -9 left in the middle of a save: never renamed, so never the checkpoint."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):  # not ours to remove: the first save says what is wrong
            stale.unlink()


def _refuse_symlink(path: Path, allow: bool) -> Path:
    """A checkpoint that is a link could be someone else's file: written through only when allowed."""
    if not path.is_symlink():
        return path
    if not allow:
        raise InputError(
            f"{path}: the checkpoint is a symbolic link (to {os.readlink(path)}); refusing to write through it: "
            "make it a regular file (or, for tail, pass --allow-checkpoint-symlink if the link is yours)"
        )
    return Path(os.path.realpath(path))

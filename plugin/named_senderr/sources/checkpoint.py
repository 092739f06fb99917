"""Where the tail stopped in each file, kept across restarts.

A file is known by device and inode, which survive a rename but can be reused
by the file system after a delete; so each entry also keeps a fingerprint (a
hash of the first bytes already read): a reused inode with other content reads
from its start instead of from a stranger's offset. The file is replaced
atomically (temp file, fsync, rename), so a crash leaves the old or the new
checkpoint, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
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


class Checkpoint:
    """The saved positions, keyed by (device, inode); ``path`` None keeps them in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.positions: dict[tuple[int, int], Position] = self._load() if path else {}

    def get(self, dev: int, ino: int) -> Position | None:
        return self.positions.get((dev, ino))

    def replace(self, positions: list[Position]) -> None:
        """Make ``positions`` the whole checkpoint and save it."""
        self.positions = {p.key: p for p in positions}
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        document = {"version": VERSION, "files": [asdict(p) for p in self.positions.values()]}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as stream:
                json.dump(document, stream, indent=1)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
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
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(
                f"{self.path}: not a named-senderr checkpoint ({exc}); delete it to start over "
                "(files are then read from their end, or from the start with --read-from-head)"
            ) from exc
        return {p.key: p for p in positions}

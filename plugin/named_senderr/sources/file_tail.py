"""Follow named's log files by glob, across rotation, resuming from a checkpoint.

Each poll reads what was appended since the last one, in blocks, through the
same ``candidate_lines`` scanner as ``parse``, and hands out only whole lines.
Rotation comes in two kinds, both handled: rename-and-create (the old inode is
drained through its open descriptor, then let go after ``rotate_wait``) and
copytruncate (the file's start no longer matches its fingerprint, so it is
read again from byte 0; a copy that appears under the glob starts where the
original had been read to). The checkpoint moves only when the consumer calls
``TailBatch.commit()``: what was handed out but not committed is read again
after a restart, so nothing is lost.
"""

from __future__ import annotations

import glob
import io
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.checkpoint import FINGERPRINT_BYTES, Checkpoint, Position, fingerprint, matches
from named_senderr.sources.log_file import BLOCK_SIZE, candidate_lines
from named_senderr.sources.phrase_scan import NEEDLES
from named_senderr.telemetry import Stats

READ_LIMIT = 16 * BLOCK_SIZE  # per file and poll, so one busy file cannot starve the others
Warn = Callable[[str], None]


@dataclass(frozen=True)
class TailConfig:
    """What to follow and how often to look; bounded so a typo cannot spin or stall."""

    globs: tuple[str, ...]
    checkpoint: Path | None = None
    poll_interval: float = 0.25
    rotate_wait: float = 5.0  # how long a rotated-away file is still read for late writes
    read_from_head: bool = False  # files present at the first start: from byte 0, not their end

    def __post_init__(self) -> None:
        if not self.globs:
            raise ConfigError("tail needs at least one file or glob, e.g. '/var/log/named/*.log'")
        if not 0.01 <= self.poll_interval <= 10:
            raise ConfigError(f"poll interval {self.poll_interval} s is outside 0.01 to 10 s")
        if not 0 <= self.rotate_wait <= 3600:
            raise ConfigError(f"rotate wait {self.rotate_wait} s is outside 0 to 3600 s")


@dataclass(frozen=True, slots=True)
class TailLine:
    path: str
    offset: int
    raw: bytes
    oversize: bool


@dataclass
class TailBatch:
    """Lines read by one poll; ``commit()`` once they are safely taken moves the checkpoint past them."""

    lines: list[TailLine]
    more: bool  # some file has more to read right away: poll again without waiting
    marks: list[Position]
    on_commit: Callable[[list[Position]], None]

    def commit(self) -> None:
        self.on_commit(self.marks)


@dataclass
class _Tracked:
    path: str
    fd: int
    dev: int
    ino: int
    offset: int  # next byte to read: everything before it was handed out
    committed: int
    fp: str = ""
    fp_size: int = 0
    skipping: bool = False  # inside a line over the limit, discarding up to its newline
    gone_since: float | None = None  # when no glob showed this inode any more

    def position(self, offset: int) -> Position:
        return Position(self.path, self.dev, self.ino, offset, self.fp, self.fp_size)


@dataclass
class FileTail:
    """The tail itself: ``poll()`` reads, ``close()`` releases the files; one thread at a time."""

    config: TailConfig
    stats: Stats
    warn: Warn
    clock: Callable[[], float] = time.monotonic
    checkpoint: Checkpoint = field(init=False)
    _files: dict[tuple[int, int], _Tracked] = field(default_factory=dict, init=False)
    _truncated: list[tuple[str, int, int]] = field(default_factory=list, init=False)
    _ignored: set[tuple[tuple[int, int], str]] = field(default_factory=set, init=False)  # warned about once
    _first_scan: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.checkpoint = Checkpoint(self.config.checkpoint)

    def poll(self) -> TailBatch:
        self._scan()
        lines: list[TailLine] = []
        more = False
        for tracked in list(self._files.values()):
            self._check_truncation(tracked)
            more |= self._read(tracked, lines)
        self._retire()
        marks = [t.position(t.offset) for t in self._files.values()]
        return TailBatch(lines, more, marks, self._commit)

    def close(self) -> None:
        self._save()
        for tracked in self._files.values():
            os.close(tracked.fd)
        self._files.clear()

    def _scan(self) -> None:
        seen: dict[tuple[int, int], tuple[str, int]] = {}
        for pattern in self.config.globs:
            for path in sorted(glob.glob(pattern)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # rotated away between glob and stat
                if stat.S_ISREG(st.st_mode):
                    seen.setdefault((st.st_dev, st.st_ino), (path, st.st_size))
        now = self.clock()
        self._ignored &= {(key, path) for key, (path, _) in seen.items()}  # a reused inode is looked at again
        for key, (path, size) in seen.items():
            tracked = self._files.get(key)
            if tracked is not None:
                tracked.path, tracked.gone_since = path, None
            elif (key, path) not in self._ignored:
                self._open(path, key, size)
        for key, tracked in self._files.items():
            if key not in seen and tracked.gone_since is None:
                tracked.gone_since = now
        if self._first_scan:
            self._resume_rotated(seen, now)
            self._first_scan = False

    def _open(self, path: str, key: tuple[int, int], size: int, offset: int | None = None) -> _Tracked | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._ignored.add((key, path))
            self.warn(f"{path}: cannot open: {exc.strerror}; run as a user that can read it")
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key:  # replaced between the scan and the open: the next scan sees it
            os.close(fd)
            return None
        if os.pread(fd, 2, 0) == b"\x1f\x8b":
            os.close(fd)
            self._ignored.add((key, path))
            self.warn(f"{path}: gzip'd, not followed; narrow the glob, and use 'parse' for old rotations")
            return None
        if offset is None:
            offset = self._start_offset(path, fd, key, size)
        tracked = _Tracked(path, fd, key[0], key[1], offset, offset)
        tracked.fp, tracked.fp_size = fingerprint(fd, offset)
        self._files[key] = tracked
        return tracked

    def _start_offset(self, path: str, fd: int, key: tuple[int, int], size: int) -> int:
        saved = self.checkpoint.get(*key)
        if saved is not None:
            if saved.offset <= size and matches(fd, saved):
                return saved.offset
            self.warn(f"{path}: inode {key[1]} now holds other content than checkpointed; reading it from the start")
            return 0
        copied = self._copy_of(fd)
        if copied is not None:
            return copied
        if self._first_scan and not self.config.read_from_head:
            tail = os.pread(fd, BLOCK_SIZE, max(0, size - BLOCK_SIZE))
            return size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else size
        return 0

    def _copy_of(self, fd: int) -> int | None:
        """Where a copytruncate copy should start: where its original had been read to."""
        known = [(t.fp, t.fp_size, t.offset) for t in self._files.values()] + self._truncated
        for fp, fp_size, offset in known:
            if fp_size and fingerprint(fd, fp_size) == (fp, fp_size):
                return offset
        return None

    def _resume_rotated(self, seen: dict, now: float) -> None:
        """Checkpointed files renamed while we were down: found beside their old path, drained."""
        for saved in list(self.checkpoint.positions.values()):
            if saved.key in seen or saved.key in self._files:
                continue
            found = _find_inode(os.path.dirname(saved.path) or ".", saved.key)
            tracked = self._open(found[0], saved.key, found[1], saved.offset) if found else None
            if tracked is not None and matches(tracked.fd, saved):
                tracked.gone_since = now
                continue
            if tracked is not None:
                os.close(tracked.fd)
                del self._files[saved.key]
            self.warn(f"{saved.path}: gone since the checkpoint; what it got after byte {saved.offset} is lost")

    def _check_truncation(self, tracked: _Tracked) -> None:
        size = os.fstat(tracked.fd).st_size
        if size >= tracked.offset and matches(tracked.fd, tracked.position(tracked.offset)):
            return
        self.warn(f"{tracked.path}: truncated or rewritten (copytruncate?); reading it again from the start")
        self._truncated = [*self._truncated[-15:], (tracked.fp, tracked.fp_size, tracked.offset)]
        tracked.offset, tracked.committed, tracked.skipping = 0, 0, False
        tracked.fp, tracked.fp_size = fingerprint(tracked.fd, 0)

    def _read(self, tracked: _Tracked, lines: list[TailLine]) -> bool:
        """Append the new whole lines of ``tracked``; True when more is waiting."""
        size = os.fstat(tracked.fd).st_size
        if size <= tracked.offset:
            return False
        data = os.pread(tracked.fd, min(size - tracked.offset, READ_LIMIT), tracked.offset)
        base = tracked.offset
        if tracked.skipping:
            newline = data.find(b"\n")
            if newline == -1:
                tracked.offset += len(data)
                return len(data) == READ_LIMIT
            data, base, tracked.skipping = data[newline + 1 :], base + newline + 1, False
        end = data.rfind(b"\n") + 1
        if self._is_final(tracked) and base + len(data) == size:
            end = len(data)  # rotated away and quiet: its unfinished last line is all there will be
        elif end == 0 and len(data) > MAX_LINE_BYTES:
            self.stats.lines += 1
            self.stats.oversize_lines += 1
            if any(needle in data[:MAX_LINE_BYTES] for needle in NEEDLES):
                lines.append(TailLine(tracked.path, base, data[:MAX_LINE_BYTES], True))
            tracked.offset, tracked.skipping = base + len(data), True
            return len(data) == READ_LIMIT
        for offset, raw, oversize in candidate_lines(io.BytesIO(data[:end]), self.stats):
            lines.append(TailLine(tracked.path, base + offset, raw, oversize))
        tracked.offset = base + end
        if tracked.fp_size < min(tracked.offset, FINGERPRINT_BYTES):
            tracked.fp, tracked.fp_size = fingerprint(tracked.fd, tracked.offset)
        return len(data) == READ_LIMIT

    def _is_final(self, tracked: _Tracked) -> bool:
        return tracked.gone_since is not None and self.clock() - tracked.gone_since >= self.config.rotate_wait

    def _retire(self) -> None:
        for key, tracked in list(self._files.items()):
            drained = tracked.offset >= os.fstat(tracked.fd).st_size and tracked.committed == tracked.offset
            if drained and self._is_final(tracked):
                os.close(tracked.fd)
                del self._files[key]

    def _commit(self, marks: list[Position]) -> None:
        for mark in marks:
            tracked = self._files.get(mark.key)
            # a mark from before a truncation no longer matches the file's start: stale, ignored
            if tracked is not None and mark.offset <= tracked.offset and matches(tracked.fd, mark):
                tracked.committed = mark.offset
        self._save()

    def _save(self) -> None:
        positions = [t.position(t.committed) for t in self._files.values()]
        if {p.key: p for p in positions} != self.checkpoint.positions:
            self.checkpoint.replace(positions)


def _find_inode(directory: str, key: tuple[int, int]) -> tuple[str, int] | None:
    """Path and size of the regular file in ``directory`` with this (device, inode), if any."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.inode() == key[1] and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    if st.st_dev == key[0]:
                        return entry.path, st.st_size
    except OSError:
        pass  # the directory itself is gone: nothing to resume
    return None

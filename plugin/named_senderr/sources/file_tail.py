"""Follow named's log files by glob, across rotation, resuming from a checkpoint.

Each poll reads what was appended since the last one, in blocks, through the
same ``candidate_lines`` scanner as ``parse``, and hands out only whole lines.
Rotation comes in two kinds, both handled while running and across a restart.
Rename-and-create: the old inode is drained through its open descriptor (after
a restart: found again by inode beside its old path), then let go after
``rotate_wait``. Copytruncate: the file's start no longer matches its
fingerprint, so it is read again from byte 0, and the copy, recognised by its
fingerprint under the glob or beside the original, is finished from where the
original had been read to. Files present when a glob is first followed start
at their end (at byte 0 with ``read_from_head``); a file that appears later,
also while the tail was stopped, is read from its start. The checkpoint moves
only when the consumer commits: what was handed out but not committed is read
again after a restart, so nothing is lost.
"""

from __future__ import annotations

import glob
import io
import os
import stat
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.checkpoint import (
    FINGERPRINT_BYTES,
    Checkpoint,
    Position,
    fingerprint,
    make_directory,
    matches,
)
from named_senderr.sources.log_file import BLOCK_SIZE, candidate_lines
from named_senderr.sources.phrase_scan import NEEDLES
from named_senderr.telemetry import Stats

READ_LIMIT = 16 * BLOCK_SIZE  # per file and poll, so one busy file cannot starve the others
REMEMBERED_TRUNCATIONS = 16  # truncated files whose copy may still turn up under the glob
Key = tuple[int, int]  # (device, inode)
Warn = Callable[[str], None]


@dataclass(frozen=True)
class TailConfig:
    """What to follow and how often to look; bounded so a typo cannot spin or stall."""

    globs: tuple[str, ...]
    checkpoint: Path | None = None
    poll_interval: float = 0.25
    rotate_wait: float = 5.0  # how long a rotated-away file is still read for late writes
    read_from_head: bool = False  # files present when their glob is first followed: from byte 0, not their end
    allow_checkpoint_symlink: bool = False  # write through a checkpoint path that is a symbolic link

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
    end: int  # where the next line starts; an oversize line's own start, so a restart sees it again


@dataclass
class TailBatch:
    """Lines read by one poll; ``commit()`` once they are safely taken moves the checkpoint past them."""

    lines: list[TailLine]
    more: bool  # some file has more to read right away: poll again without waiting
    marks: list[Position]
    on_commit: Callable[[list[Position]], None]
    bounds: list[int]  # bounds[i]: how many of the lines come from the files of marks[: i + 1]

    def commit(self) -> None:
        self.on_commit(self.marks)

    def commit_through(self, taken: int) -> None:
        """Move the checkpoint past the first ``taken`` lines only, for a consumer that hands them on in parts."""
        marks: list[Position] = []
        start = 0
        for mark, bound in zip(self.marks, self.bounds, strict=True):
            if bound <= taken:
                marks.append(mark)
            elif start < taken:
                marks.append(replace(mark, offset=self.lines[taken - 1].end))
            start = bound
        self.on_commit(marks)


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
    _files: dict[Key, _Tracked] = field(default_factory=dict, init=False)
    _truncated: list[Position] = field(default_factory=list, init=False)  # whose copy is finished where they were
    _ignored: set[tuple[Key, str]] = field(default_factory=set, init=False)  # gzip'd: warned about once
    _unreadable: set[Key] = field(default_factory=set, init=False)  # warned about once, tried again every poll
    _fresh: dict[Key, int] = field(default_factory=dict, init=False)  # present when first followed: size then
    _empty: set[str] = field(default_factory=set, init=False)  # globs that matched no file at the last look
    _first_scan: bool = field(default=True, init=False)
    followed: set[Key] = field(default_factory=set, init=False)  # every file read in this run, for the summary

    def __post_init__(self) -> None:
        if self.config.checkpoint is not None:
            make_directory(self.config.checkpoint, self.warn)
        self.checkpoint = Checkpoint(self.config.checkpoint, self.config.allow_checkpoint_symlink)

    def poll(self) -> TailBatch:
        self._scan()
        self.followed.update(self._files)
        lines: list[TailLine] = []
        more = False
        bounds: dict[Key, int] = {}
        for key, tracked in list(self._files.items()):
            self._check_truncation(tracked)
            more |= self._read(tracked, lines)
            bounds[key] = len(lines)
        self._retire()
        kept = [key for key in bounds if key in self._files]
        marks = [self._files[key].position(self._files[key].offset) for key in kept]
        return TailBatch(lines, more, marks, self._commit, [bounds[key] for key in kept])

    def close(self) -> None:
        self._save()
        for tracked in self._files.values():
            os.close(tracked.fd)
        self._files.clear()

    def _scan(self) -> None:
        seen: dict[Key, tuple[str, int]] = {}
        followed_before = self._followed_before() if self._first_scan else set()
        known: set[Key] = set()  # matched by a glob the checkpoint was already following
        for pattern in self.config.globs:
            found = self._glob(pattern, seen)
            self._say_whether_empty(pattern, [seen[key][0] for key in found])
            if pattern in followed_before:
                known.update(found)
        now = self.clock()
        if self._first_scan:
            self._fresh = {key: size for key, (_, size) in seen.items() if key not in known}
            self._resume_renamed(seen, now)
        self._fresh = {key: size for key, size in self._fresh.items() if key in seen}
        self._unreadable &= seen.keys()
        self._ignored &= {(key, path) for key, (path, _) in seen.items()}  # a reused inode is looked at again
        for key in sorted(seen, key=lambda k: k not in self.checkpoint.positions):  # checkpointed ones first
            path, size = seen[key]
            tracked = self._files.get(key)
            if tracked is not None:
                tracked.path, tracked.gone_since = path, None
            elif (key, path) not in self._ignored:
                self._open(path, key, size)
        for key, tracked in self._files.items():
            if key not in seen and tracked.gone_since is None:
                tracked.gone_since = now
        if self._first_scan:
            self._first_scan = False
            self._finish_copies(now)
            self._save()  # the globs and the starting points, before anything is handed out

    def _followed_before(self) -> set[str]:
        """The globs a restart picks up: their new files were created while we were down."""
        if not self.checkpoint.found:
            return set()
        if self.checkpoint.globs is None:  # saved before globs were recorded: the same ones, most likely
            return set(self.config.globs)
        return set(self.config.globs) & set(self.checkpoint.globs)

    @staticmethod
    def _glob(pattern: str, seen: dict[Key, tuple[str, int]]) -> list[Key]:
        found = []
        for path in sorted(glob.glob(pattern)):
            try:
                st = os.stat(path)
            except OSError:
                continue  # rotated away between glob and stat
            if stat.S_ISREG(st.st_mode):
                seen.setdefault((st.st_dev, st.st_ino), (path, st.st_size))
                found.append((st.st_dev, st.st_ino))
        return found

    def _say_whether_empty(self, pattern: str, paths: list[str]) -> None:
        """Once when a glob matches nothing (a typo looks just like a quiet log), once when it matches again."""
        if not paths and pattern not in self._empty:
            self._empty.add(pattern)
            self.warn(f"{pattern}: no file matches yet; waiting for one to appear, to read it from its start")
        elif paths and pattern in self._empty:
            self._empty.discard(pattern)
            self.warn(f"{pattern}: now matches {paths[0]}; following it")

    def _open(self, path: str, key: Key, size: int, offset: int | None = None) -> _Tracked | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if key not in self._unreadable:
                self._unreadable.add(key)
                self.warn(
                    f"{path}: cannot open: {exc.strerror}; run as a user that can read it "
                    "(tried again at every poll while a glob matches it)"
                )
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
        if key in self._unreadable:
            self._unreadable.discard(key)
            self.warn(f"{path}: readable now; following it")
        if offset is None:
            offset = self._start_offset(path, fd, key, size)
        tracked = _Tracked(path, fd, key[0], key[1], offset, offset)
        tracked.fp, tracked.fp_size = fingerprint(fd, offset)
        self._files[key] = tracked
        return tracked

    def _start_offset(self, path: str, fd: int, key: Key, size: int) -> int:
        fresh_size = self._fresh.pop(key, None)
        saved = self.checkpoint.get(*key)
        if saved is not None:
            if saved.offset <= size and matches(fd, saved):
                return saved.offset
            self.warn(f"{path}: inode {key[1]} now holds other content than checkpointed; reading it from the start")
            self._truncated.append(saved)  # copytruncate while we were down: its copy is finished from there
            return 0
        copied = self._copy_of(fd)
        if copied is not None:
            return copied
        if fresh_size is not None and not self.config.read_from_head:
            return _end_of_last_line(fd, min(fresh_size, size))
        return 0

    def _copy_of(self, fd: int) -> int | None:
        """Where a copytruncate copy should start: where its original had been read to."""
        for tracked in self._files.values():
            if tracked.fp_size and fingerprint(fd, tracked.fp_size) == (tracked.fp, tracked.fp_size):
                return tracked.offset
        for position in self._truncated:
            if position.fingerprint_size and matches(fd, position):
                self._truncated.remove(position)
                return position.offset
        return None

    def _resume_renamed(self, seen: dict[Key, tuple[str, int]], now: float) -> None:
        """Checkpointed files renamed while we were down: found by inode beside their old path, drained."""
        for saved in self.checkpoint.positions.values():
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
            self._truncated.append(saved)  # gone or rewritten: a copy of it may still be found

    def _finish_copies(self, now: float) -> None:
        """Checkpointed files truncated or gone while we were down: their copy is finished, or the loss said."""
        for saved in list(self._truncated):
            if not self._open_copy(saved, now):
                self._truncated.remove(saved)
                self.warn(
                    f"{saved.path}: truncated, rewritten or removed while stopped, and no copy of it found beside it; "
                    f"anything it got after byte {saved.offset} is lost"
                )

    def _open_copy(self, position: Position, now: float) -> bool:
        """Find, beside ``position.path``, a file that starts as it did, and read it on from its offset."""
        if not position.fingerprint_size:
            return False  # nothing was read from it: nothing to recognise a copy by
        copy = _find_copy(os.path.dirname(position.path) or ".", position, self._files.keys())
        tracked = self._open(*copy, position.offset) if copy else None
        if tracked is None:
            return False
        tracked.gone_since = now
        self._truncated.remove(position)
        return True

    def _check_truncation(self, tracked: _Tracked) -> None:
        size = os.fstat(tracked.fd).st_size
        if size >= tracked.offset and matches(tracked.fd, tracked.position(tracked.offset)):
            return
        self.warn(f"{tracked.path}: truncated or rewritten (copytruncate?); reading it again from the start")
        self._truncated = [*self._truncated[1 - REMEMBERED_TRUNCATIONS :], tracked.position(tracked.offset)]
        self._open_copy(self._truncated[-1], self.clock())  # a copy outside the glob: finished from there
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
                lines.append(TailLine(tracked.path, base, data[:MAX_LINE_BYTES], True, base))
            tracked.offset, tracked.skipping = base + len(data), True
            return len(data) == READ_LIMIT
        for offset, raw, oversize in candidate_lines(io.BytesIO(data[:end]), self.stats, strip_bom=base == 0):
            start = base + offset
            after = start if oversize else min(start + len(raw) + 1, base + end)
            lines.append(TailLine(tracked.path, start, raw, oversize, after))
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
        # a checkpointed file that cannot be opened right now keeps its place for when it can
        positions += [self.checkpoint.positions[k] for k in self._unreadable if k in self.checkpoint.positions]
        if {p.key: p for p in positions} != self.checkpoint.positions or self.checkpoint.globs != self.config.globs:
            self.checkpoint.replace(positions, self.config.globs)


def _end_of_last_line(fd: int, size: int) -> int:
    """Where the first line written after ``size`` bytes starts (a line being written is skipped whole)."""
    tail = os.pread(fd, BLOCK_SIZE, max(0, size - BLOCK_SIZE))
    return size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else size


def _find_inode(directory: str, key: Key) -> tuple[str, int] | None:
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


def _find_copy(directory: str, position: Position, followed: Container[Key]) -> tuple[str, Key, int] | None:
    """Path, key and size of a file in ``directory``, not followed yet, that starts as ``position`` did."""
    try:
        with os.scandir(directory) as entries:
            files = sorted((e for e in entries if e.is_file(follow_symlinks=False)), key=lambda e: e.name)
    except OSError:
        return None  # the directory itself is gone: no copy to finish
    for entry in files:
        try:
            st = entry.stat(follow_symlinks=False)
            if (st.st_dev, st.st_ino) in followed or st.st_size < position.offset:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # gone or unreadable: not the copy we can finish
        try:
            if matches(fd, position):
                return entry.path, (st.st_dev, st.st_ino), st.st_size
        finally:
            os.close(fd)
    return None

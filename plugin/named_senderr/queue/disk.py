"""The durable queue between parsing and the sinks: segment files on disk, one read cursor per sink.

Events are appended (and fsync'd per batch) before any sink sees them, and a
sink's cursor moves past them only after that sink stored them; a segment is
deleted once every cursor has left it. An append is all or nothing: when the
write or its fsync fails (disk full, I/O error) the segment is cut back to
where it ended, so nothing of a refused batch is kept or ever delivered, and
the next append starts on clean ground. A cursor save that fails keeps the
cursor in memory and is tried again later: delivery goes on, and a restart
meanwhile only sends a few stored batches again. Damaged bytes cost only the
records they touched (queue/records.py). The whole directory is bounded by
``max_bytes``; ``wait_room`` is how the reader is held back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

from named_senderr.errors import ConfigError, InputError
from named_senderr.queue.files import (
    Position,
    fsync_dir,
    load_cursors,
    lock_dir,
    open_segment,
    read_segment,
    save_cursors,
    segment_name,
    segment_numbers,
    write_all,
)
from named_senderr.queue.records import (
    HEADER,
    MAX_RECORD,
    Damage,
    decode_records,
    encode_record,
    looks_torn,
    next_record,
)


class QueueWriteError(InputError):
    """An append the disk refused (full, I/O error); none of its records was kept."""


class DiskQueue:
    """Thread-safe: one writer (the reading loop) and one consumer thread per reader name.

    ``warn`` hears, once each, what an operator must know: damage found, the disk refusing
    appends and taking them again, cursors that cannot be saved and can again.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        readers: tuple[str, ...],
        segment_bytes: int = 0,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(16 * 1024, min(8 * 1024 * 1024, max_bytes // 8))
        self.warn = warn
        self.damage: list[Damage] = []
        self.appended = 0
        self.write_failures = 0  # appends refused by the disk
        self.write_error: str | None = None  # set while the disk refuses appends
        self._refused_bytes = 0  # size of the last append the disk refused
        self._cursor_error: str | None = None  # set while the cursors cannot be saved
        self._skips: dict[Position, int] = {}  # damaged ranges the readers jump over
        self._cut_back: int | None = None  # a failed append's bytes not yet cut off the segment
        self._cond = threading.Condition()
        self._lock_fd = lock_dir(self.dir)
        try:
            self._open(readers)
        except OSError as exc:
            os.close(self._lock_fd)
            raise InputError(f"queue dir {self.dir}: cannot open the queue: {exc.strerror}") from None
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self, readers: tuple[str, ...]) -> None:
        segments = segment_numbers(self.dir)
        self._write_seq = segments[-1] if segments else 1
        self._end: Position = (self._write_seq, self._recover(self._write_seq))
        self._sizes = {seq: (self.dir / segment_name(seq)).stat().st_size for seq in segments}
        self._sizes.setdefault(self._write_seq, self._end[1])
        self._fd = open_segment(self.dir / segment_name(self._write_seq), os.O_CREAT)
        first: Position = (segments[0], 0) if segments else (self._write_seq, 0)
        try:
            saved = load_cursors(self.dir)
        except ConfigError:
            os.close(self._fd)
            raise
        self._acked = {name: min(max(saved.get(name, first), first), self._end) for name in readers}
        self._read = dict(self._acked)
        self._gc()

    @property
    def held_bytes(self) -> int:
        """Bytes of the segments still on disk (what ``max_bytes`` bounds)."""
        with self._cond:
            return sum(self._sizes.values())

    @property
    def torn_bytes(self) -> int:
        return sum(d.size for d in self.damage if d.torn)

    @property
    def damaged_bytes(self) -> int:
        return sum(d.size for d in self.damage if not d.torn)

    def pending(self, reader: str) -> bool:
        """True while ``reader`` has not acknowledged everything appended."""
        with self._cond:
            return self._acked[reader] < self._end

    def wait_room(self, size: int, stop: Callable[[], bool], timeout: float = 0.2) -> bool:
        """Wait until ``size`` more bytes fit (or the queue holds nothing); False if ``stop()`` came first."""
        with self._cond:
            while sum(self._sizes.values()) + size > self.max_bytes and self._unacked():
                if stop():
                    return False
                self._cond.wait(timeout)
            return True

    def has_room(self, size: int) -> bool:
        with self._cond:
            return sum(self._sizes.values()) + size <= self.max_bytes or not self._unacked()

    def pause(self, stop: Callable[[], bool], seconds: float = 1.0, step: float = 0.2) -> bool:
        """Wait ``seconds`` before trying a refused append again (an ack may free space); False if stopped."""
        with self._cond:
            for _ in range(max(1, round(seconds / step))):
                if stop():
                    return False
                self._cond.wait(step)
        return not stop()

    def refusing(self) -> bool:
        """The disk refused the last append and still has less room than it needed: refuse at once, encode nothing.

        One ``statvfs`` a call: as soon as the file system has room again, the next append is tried for real.
        A refusal here counts as a write failure, as the append would have been one.
        """
        if self.write_error is None:
            return False
        try:
            stat = os.statvfs(self.dir)
        except OSError:
            return False  # let the append itself find out
        if stat.f_bavail * stat.f_frsize >= self._refused_bytes:
            return False
        self.write_failures += 1
        return True

    def refusal(self) -> str:
        """What a refused append says, the same whether it was tried or refused at once."""
        return f"queue {self.dir}: the disk refused the write ({self.write_error}); nothing of it was kept"

    def append(self, payloads: list[bytes]) -> None:
        """Write ``payloads`` and fsync them: once this returns they survive a crash.

        All or nothing: on failure (QueueWriteError) none of them was kept, whatever the disk took.
        """
        if not payloads:
            return
        if not all(payloads):
            raise ValueError("an empty payload cannot be queued")
        data = b"".join(encode_record(p) for p in payloads)
        with self._cond:
            try:
                self._finish_cut_back()
                if self._end[1] and self._end[1] + len(data) > self.segment_bytes:
                    self._roll()
                write_all(self._fd, data)
                os.fsync(self._fd)
            except OSError as exc:
                self._cut_back = self._end[1]
                self._refused_bytes = len(data)
                self._finish_cut_back()
                self._refused(exc)
            self._end = (self._write_seq, self._end[1] + len(data))
            self._sizes[self._write_seq] = self._end[1]
            self.appended += len(payloads)
            if self.write_error is not None:
                self.warn(f"queue {self.dir}: writable again ({self.write_failures:,} append(s) refused so far)")
                self.write_error = None
            self._cond.notify_all()

    def _finish_cut_back(self) -> None:
        """Cut the current segment back to its end after a failed append (raises while that fails)."""
        if self._cut_back is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._cut_back)
                self._cut_back = None
        if self._cut_back is not None:
            raise OSError(errno.EIO, "cannot cut a failed write off the segment")

    def _refused(self, exc: OSError) -> None:
        self.write_failures += 1
        if self.write_error is None:
            self.warn(
                f"queue {self.dir}: cannot write the queue: {exc.strerror}; free space or move --queue-dir. "
                "New events wait (serve withholds acks, ship pauses reading) until the disk takes them again; "
                "queued ones are still delivered"
            )
        self.write_error = exc.strerror or str(exc)
        raise QueueWriteError(self.refusal())

    def newest(self) -> set[bytes]:
        """The records of the last two segments: what the last appends before a crash may have written.

        A follower restarted from a checkpoint saved just before its crash reads those lines again; their events
        encode to the same bytes, so the writer can recognise and skip them (at most a poll, within a segment).
        """
        with self._cond:
            last = self._write_seq
            ends = {seq: self._sizes.get(seq, 0) for seq in (last - 1, last)}
            ends[last] = self._end[1]
        found: set[bytes] = set()
        for seq, stop in ends.items():
            if seq > 0 and stop:
                found.update(decode_records(read_segment(self.dir / segment_name(seq), 0, stop, stop))[0])
        return found

    def read(self, reader: str, max_records: int, max_bytes: int) -> tuple[list[bytes], Position]:
        """The next records for ``reader`` (at most the limits, at least one if any) and the position after them."""
        with self._cond:
            seq, offset = self._read[reader]
            end = self._end
        records: list[bytes] = []
        size = 0
        while (seq, offset) < end and len(records) < max_records and size < max_bytes:
            with self._cond:
                stop = end[1] if seq == end[0] else self._sizes.get(seq, 0)
                skip = self._skips.get((seq, offset), 0)
            if offset >= stop:
                seq, offset = seq + 1, 0  # the end of a finished segment: go on
                continue
            if skip:
                offset += skip
                continue
            path = self.dir / segment_name(seq)
            got = decode_records(read_segment(path, offset, stop, max(max_bytes - size, HEADER.size)))[0]
            if not got and not records:  # perhaps one record above the byte limit: read it whole
                got = decode_records(read_segment(path, offset, stop, MAX_RECORD + HEADER.size))[0]
            if not got:
                if records:
                    break  # the rest next time
                offset += self._skip_damage(seq, offset, stop)
                continue
            taken = got[: max_records - len(records)]
            used = sum(HEADER.size + len(r) for r in taken)
            records.extend(taken)
            offset += used
            size += used
        with self._cond:
            self._read[reader] = (seq, offset)
        return records, (seq, offset)

    def _skip_damage(self, seq: int, offset: int, stop: int) -> int:
        """No whole record at ``offset``: the bytes up to the next valid one, noted and reported once."""
        data = read_segment(self.dir / segment_name(seq), offset, stop, stop - offset)
        found = next_record(data, 0)
        size = stop - offset if found is None else found
        with self._cond:
            if (seq, offset) not in self._skips:
                self._note(Damage(segment_name(seq), offset, size, torn=False, cut=False))
                self._skips[(seq, offset)] = size
        return size

    def ack(self, reader: str, position: Position) -> None:
        """``reader`` stored everything before ``position``: save its cursor, delete segments all have left."""
        with self._cond:
            self._acked[reader] = max(self._acked[reader], position)
            self._save_cursors()
            self._gc()
            self._cond.notify_all()

    def rewind(self, reader: str) -> None:
        """Read again from the last acknowledged position (after a batch was not delivered)."""
        with self._cond:
            self._read[reader] = self._acked[reader]

    def wait_data(self, reader: str, timeout: float) -> None:
        with self._cond:
            if self._cursor_error is not None:
                self._save_cursors()  # idle: try the save the disk refused again
            if self._read[reader] >= self._end:
                self._cond.wait(timeout)

    def close(self) -> None:
        with self._cond:
            self._save_cursors()
            self._gc()
            os.close(self._fd)
            if not self._unacked() and self._end[1] == 0:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / segment_name(self._write_seq)).unlink()
            os.close(self._lock_fd)

    def _unacked(self) -> bool:
        return any(position < self._end for position in self._acked.values())

    def _note(self, damage: Damage) -> None:
        self.damage.append(damage)
        self.warn(damage.describe(self.dir))

    def _roll(self) -> None:
        """Start the next segment; on failure the current one stays the one written."""
        fd = open_segment(self.dir / segment_name(self._write_seq + 1), os.O_CREAT | os.O_EXCL)
        os.close(self._fd)
        self._fd = fd
        self._write_seq += 1
        self._end = (self._write_seq, 0)
        self._sizes[self._write_seq] = 0
        fsync_dir(self.dir)

    def _gc(self) -> None:
        """Delete the segments every reader has left; start a new one if all have read the current one."""
        low = min(self._acked.values(), default=self._end)
        if low == self._end and self._end[1] > 0 and self._cut_back is None:
            try:
                self._roll()
            except OSError:
                pass  # no room for a new segment now: the next ack tries again
            else:
                self._acked = {name: self._end for name in self._acked}
                self._read = {name: max(p, self._end) for name, p in self._read.items()}
                self._save_cursors()
                low = self._end
        for seq in [s for s in self._sizes if s < low[0]]:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / segment_name(seq)).unlink()
            del self._sizes[seq]
        self._skips = {p: n for p, n in self._skips.items() if p[0] >= low[0]}

    def _recover(self, seq: int) -> int:
        """Find the damage in the last segment, cut what ends it; its valid length."""
        path = self.dir / segment_name(seq)
        if not path.exists():
            return 0
        data = path.read_bytes()
        valid = decode_records(data)[1]
        while valid < len(data) and (found := next_record(data, valid)) is not None:
            self._note(Damage(segment_name(seq), valid, found - valid, torn=False, cut=False))
            self._skips[(seq, valid)] = found - valid
            valid = decode_records(data, found)[1]
        if valid < len(data):
            self._note(Damage(segment_name(seq), valid, len(data) - valid, torn=looks_torn(data[valid:]), cut=True))
            with open(path, "r+b") as handle:
                handle.truncate(valid)
                os.fsync(handle.fileno())
        return valid

    def _save_cursors(self) -> None:
        """A failure keeps the cursors in memory, to be saved by the next ack or idle wait."""
        try:
            save_cursors(self.dir, self._acked)
        except OSError as exc:
            if self._cursor_error is None:
                self.warn(
                    f"queue {self.dir}: cannot save the read cursors ({exc.strerror}); delivery goes on and "
                    "the save is retried; a restart meanwhile sends the last batches again (stored once)"
                )
            self._cursor_error = exc.strerror or str(exc)
            return
        if self._cursor_error is not None:
            self.warn(f"queue {self.dir}: read cursors saved again")
            self._cursor_error = None

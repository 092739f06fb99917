"""The durable queue between parsing and the sinks: segment files on disk, one read cursor per sink.

Events are appended (and fsync'd per batch) before any sink sees them, and a
sink's cursor moves past them only after that sink stored them; a segment is
deleted once every cursor has left it. A record is ``length, crc32, payload``:
after a crash the torn tail of the last segment fails the length or CRC check
and is cut off, never trusted and never a crash. The whole directory is
bounded by ``max_bytes``; ``wait_room`` is how the reader is held back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

from named_senderr.errors import ConfigError, InputError

HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
MAX_RECORD = 16 * 1024 * 1024  # far above any event: a larger length is corruption, not data
CURSORS = "cursors.json"
SUFFIX = ".seg"

Position = tuple[int, int]  # (segment number, byte offset in it)


def encode_record(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes) -> tuple[list[bytes], int]:
    """The whole records at the start of ``data`` and where they end; stops at a torn or corrupt one."""
    records: list[bytes] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        if length > MAX_RECORD or start + length > len(data):
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        records.append(payload)
        offset = start + length
    return records, offset


class DiskQueue:
    """Thread-safe: one writer (the reading loop) and one consumer thread per reader name."""

    def __init__(self, directory: Path, max_bytes: int, readers: tuple[str, ...], segment_bytes: int = 0) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(16 * 1024, min(8 * 1024 * 1024, max_bytes // 8))
        self.torn_bytes = 0  # cut off the last segment at start: a write the crash interrupted
        self.appended = 0
        self._cond = threading.Condition()
        self._lock_file = self._open_dir()
        try:
            self._open(readers)
        except BaseException:
            self._lock_file.close()
            raise

    def _open(self, readers: tuple[str, ...]) -> None:
        segments = self._segments()
        self._write_seq = segments[-1] if segments else 1
        self._end: Position = (self._write_seq, self._recover(self._write_seq))
        self._sizes = {seq: (self.dir / _name(seq)).stat().st_size for seq in segments}
        self._sizes.setdefault(self._write_seq, self._end[1])
        self._file = open(self.dir / _name(self._write_seq), "ab")  # noqa: SIM115 - closed by close()
        first: Position = (segments[0], 0) if segments else (self._write_seq, 0)
        try:
            saved = self._load_cursors()
        except ConfigError:
            self._file.close()
            raise
        self._acked = {name: min(max(saved.get(name, first), first), self._end) for name in readers}
        self._read = dict(self._acked)
        self._gc()

    @property
    def bytes(self) -> int:
        with self._cond:
            return sum(self._sizes.values())

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

    def append(self, payloads: list[bytes]) -> None:
        """Write ``payloads`` and fsync them: once this returns they survive a crash."""
        if not payloads:
            return
        data = b"".join(encode_record(p) for p in payloads)
        with self._cond:
            try:
                if self._end[1] and self._end[1] + len(data) > self.segment_bytes:
                    self._roll()
                self._file.write(data)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise InputError(
                    f"{self.dir}: cannot write the queue: {exc.strerror}; free space or move --queue-dir"
                ) from exc
            self._end = (self._write_seq, self._end[1] + len(data))
            self._sizes[self._write_seq] = self._end[1]
            self.appended += len(payloads)
            self._cond.notify_all()

    def read(self, reader: str, max_records: int, max_bytes: int) -> tuple[list[bytes], Position]:
        """The next records for ``reader`` (at most the limits, at least one if any) and the position after them."""
        with self._cond:
            seq, offset = self._read[reader]
            end = self._end
        records: list[bytes] = []
        size = 0
        while (seq, offset) < end and len(records) < max_records and size < max_bytes:
            path = self.dir / _name(seq)
            limit = end[1] if seq == end[0] else None
            got = decode_records(_read_segment(path, offset, limit, max(max_bytes - size, HEADER.size)))[0]
            if not got and not records:  # perhaps one record above the byte limit: read it whole
                got = decode_records(_read_segment(path, offset, limit, MAX_RECORD + HEADER.size))[0]
            if not got:
                if limit is not None or records:
                    break
                seq, offset = seq + 1, 0  # the end of a finished segment (or its corrupt rest): go on
                continue
            taken = got[: max_records - len(records)]
            used = sum(HEADER.size + len(r) for r in taken)
            records.extend(taken)
            offset += used
            size += used
        with self._cond:
            self._read[reader] = (seq, offset)
        return records, (seq, offset)

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
            if self._read[reader] >= self._end:
                self._cond.wait(timeout)

    def close(self) -> None:
        with self._cond:
            self._save_cursors()
            self._gc()
            self._file.close()
            if not self._unacked() and self._end[1] == 0:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / _name(self._write_seq)).unlink()
            self._lock_file.close()

    def _unacked(self) -> bool:
        return any(position < self._end for position in self._acked.values())

    def _roll(self) -> None:
        self._file.close()
        self._write_seq += 1
        self._file = open(self.dir / _name(self._write_seq), "ab")  # noqa: SIM115 - closed by close()
        self._end = (self._write_seq, 0)
        self._sizes[self._write_seq] = 0
        _fsync_dir(self.dir)

    def _gc(self) -> None:
        """Delete the segments every reader has left; start a new one if all have read the current one."""
        low = min(self._acked.values(), default=self._end)
        if low == self._end and self._end[1] > 0:
            self._roll()
            self._acked = {name: self._end for name in self._acked}
            self._read = {name: max(p, self._end) for name, p in self._read.items()}
            self._save_cursors()
            low = self._end
        for seq in [s for s in self._sizes if s < low[0]]:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / _name(seq)).unlink()
            del self._sizes[seq]

    def _open_dir(self):
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.dir / "lock", "w")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise ConfigError(f"queue dir {self.dir}: {exc.strerror}; choose a writable directory") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ConfigError(
                f"queue dir {self.dir} is in use by another named-senderr; give each process its own --queue-dir"
            ) from None
        return lock

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob(f"*{SUFFIX}") if p.stem.isdigit())

    def _recover(self, seq: int) -> int:
        """Cut a torn or corrupt tail off the last segment; its valid length."""
        path = self.dir / _name(seq)
        if not path.exists():
            return 0
        data = path.read_bytes()
        _, valid = decode_records(data)
        if valid < len(data):
            self.torn_bytes = len(data) - valid
            with open(path, "r+b") as handle:
                handle.truncate(valid)
                os.fsync(handle.fileno())
        return valid

    def _load_cursors(self) -> dict[str, Position]:
        try:
            document = json.loads((self.dir / CURSORS).read_text(encoding="utf-8"))
            return {name: (int(p[0]), int(p[1])) for name, p in document["cursors"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ConfigError(
                f"{self.dir / CURSORS}: not a named-senderr queue cursor file ({exc}); "
                "delete the queue directory to start over (its events would then be lost)"
            ) from None

    def _save_cursors(self) -> None:
        """Temp file, fsync, rename: a crash leaves the old cursors or the new ones, never half."""
        document = {"version": 1, "cursors": {name: list(p) for name, p in self._acked.items()}}
        tmp = self.dir / f".{CURSORS}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.dir / CURSORS)


def _name(seq: int) -> str:
    return f"{seq:012d}{SUFFIX}"


def _read_segment(path: Path, offset: int, limit: int | None, size: int) -> bytes:
    wanted = size if limit is None else min(size, limit - offset)
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(wanted)
    except FileNotFoundError:
        return b""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

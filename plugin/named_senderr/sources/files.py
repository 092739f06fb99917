"""Files read once from start to end (plain, gzip) and stdin, as engine batches."""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from named_senderr.errors import InputError
from named_senderr.lines import Batch, Emit, Line
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.large_reads import READ_SIZE, large_read_candidate_lines
from named_senderr.sources.log_file import BLOCK_SIZE, BOM, InputSource, candidate_lines, starts_json
from named_senderr.sources.read_ahead import ReadAhead
from named_senderr.telemetry import Stats

SAMPLE_LOG = Path(__file__).resolve().parent.parent / "samples" / "named.log"  # shipped with the package
CHUNK = 2000  # candidate lines per batch: one queue append (and fsync) each
SPLIT_SIZE = 16 * READ_SIZE  # a smaller file is read by one thread: a second would not pay for itself
ProgressFactory = Callable[[InputSource], "Callable[[], None] | None"]


@dataclass
class FileSource:
    """Every input in order; an unreadable one is warned, counted and skipped. Nothing to acknowledge."""

    inputs: tuple[str, ...]
    stats: Stats
    warn: Callable[[str], None]
    progress: ProgressFactory | None = None
    name: str = "files"
    count_lines: bool = True  # stats.lines and undecodable_lines; ``parse`` without --stats skips them
    split_size: int = SPLIT_SIZE  # a plain file this large is read as two halves, by two threads

    def run(self, emit: Emit, stop: threading.Event) -> None:
        for batch in self.batches(stop):
            if not emit(batch):
                return  # the pipeline is stopping

    def batches(self, stop: threading.Event | None = None) -> Iterator[Batch]:
        """The batches themselves, for a reader that needs no runner (``report`` on files)."""
        for name in self.inputs:
            if stop is not None and stop.is_set():
                return
            source = InputSource(name)
            self.stats.inputs += 1
            try:
                yield from self._read(source)
            except InputError as exc:
                self.stats.unreadable_inputs += 1
                self.warn(str(exc) if str(exc).startswith(name) else f"{name}: {exc}")

    def close(self) -> None:
        """Each file is closed once read."""

    def _read(self, source: InputSource) -> Iterator[Batch]:
        stream = source.open()
        try:
            on_block = self.progress(source) if self.progress else None
            plain = _is_plain_file(stream)
            middle = _middle(stream, self.split_size) if plain else None
            if middle is not None:
                yield from self._read_halves(source, stream, middle, on_block)
            elif plain:  # a file on disk is read ahead in a thread of its own
                yield from ReadAhead(self._batches(source, large_read_candidate_lines(
                    stream, self.stats, on_block, count_lines=self.count_lines)))  # fmt: skip
            else:  # gzip, stdin and pipes keep the block reader's pace; a pipe may block, and is read here
                found = candidate_lines(stream, self.stats, on_block, count_lines=self.count_lines)
                yield from (
                    ReadAhead(self._batches(source, found)) if _is_regular(stream) else self._batches(source, found)
                )
        finally:
            if not source.is_stdin:
                stream.close()

    def _read_halves(
        self, source: InputSource, stream: BinaryIO, middle: int, on_block: Callable[[], None] | None
    ) -> Iterator[Batch]:
        """A large file as two halves, each read and scanned by a thread of its own; batches still in order."""
        json_lines = starts_json(os.pread(stream.fileno(), BLOCK_SIZE, 0).removeprefix(BOM))  # as one reader decides
        second = open(source.name, "rb", buffering=0)  # noqa: SIM115 - closed below
        try:
            second.seek(middle)
            halves = [(cast(BinaryIO, _Head(stream, middle)), 0, Stats()), (second, middle, Stats())]
            aheads = [
                ReadAhead(self._batches(source, large_read_candidate_lines(
                    part, stats, on_block, count_lines=self.count_lines, offset=offset, json_lines=json_lines)))
                for part, offset, stats in halves
            ]  # fmt: skip
            try:
                for ahead, (_, _, stats) in zip(aheads, halves, strict=True):
                    yield from ahead
                    _add_reading(self.stats, stats)
            finally:
                for ahead in aheads:
                    ahead.close()
        finally:
            second.close()

    def _batches(self, source: InputSource, found: Iterator[tuple[int, bytes, bool]]) -> Iterator[Batch]:
        file = None if source.is_stdin else source.name
        lines: list[Line] = []
        for offset, raw, oversize in found:
            lines.append(Line(raw, file, offset, None, oversize))
            if len(lines) >= CHUNK:
                yield Batch(lines)
                lines = []
        if lines:
            yield Batch(lines)


class _Head:
    """The first ``size`` bytes of a file: the half the first reader reads."""

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self._raw, self._left = raw, size

    def readinto(self, view: memoryview) -> int:
        if self._left <= 0:
            return 0
        size = self._raw.readinto(view[: self._left])  # type: ignore[attr-defined]
        self._left -= size
        return size


def _middle(stream: BinaryIO, split_size: int) -> int | None:
    """Where the second half of a large plain file starts (a line's start), or None: read it whole."""
    size = os.fstat(stream.fileno()).st_size
    if size < split_size:
        return None
    after = os.pread(stream.fileno(), MAX_LINE_BYTES + 1, size // 2)
    newline = after.find(b"\n")
    if newline == -1 or size // 2 + newline + 1 >= size:
        return None  # a line over the limit holds the middle: one reader sees it whole
    return size // 2 + newline + 1


def _add_reading(total: Stats, part: Stats) -> None:
    """What a half's reader counted, into the source's counters (each half counts apart: two threads)."""
    total.bytes += part.bytes
    total.lines += part.lines
    total.oversize_lines += part.oversize_lines
    total.undecodable_lines += part.undecodable_lines


def _is_plain_file(stream: BinaryIO) -> bool:
    return isinstance(stream, io.FileIO) and _is_regular(stream)


def _is_regular(stream: BinaryIO) -> bool:
    """A file on disk (plain or gzip): reading it never waits for a writer."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # a stream without a descriptor (tests' BytesIO stdin)
        return False

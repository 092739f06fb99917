"""Files read once from start to end (plain, gzip) and stdin, as engine batches."""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from named_senderr.errors import InputError
from named_senderr.lines import Batch, Emit, Line
from named_senderr.sources.large_reads import large_read_candidate_lines
from named_senderr.sources.log_file import InputSource, candidate_lines
from named_senderr.sources.read_ahead import read_ahead
from named_senderr.telemetry import Stats

SAMPLE_LOG = Path(__file__).resolve().parent.parent / "samples" / "named.log"  # shipped with the package
CHUNK = 2000  # candidate lines per batch: one queue append (and fsync) each
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
            batches = self._batches(source, stream)
            # A file on disk is read ahead in a thread of its own; a pipe may block, and is read here.
            yield from read_ahead(batches) if _is_regular(stream) else batches
        finally:
            if not source.is_stdin:
                stream.close()

    def _batches(self, source: InputSource, stream: BinaryIO) -> Iterator[Batch]:
        file = None if source.is_stdin else source.name
        lines: list[Line] = []
        on_block = self.progress(source) if self.progress else None
        # A plain file takes large reads; gzip, stdin and pipes keep the block reader's pace.
        reader = large_read_candidate_lines if _is_plain_file(stream) else candidate_lines
        for offset, raw, oversize in reader(stream, self.stats, on_block, count_lines=self.count_lines):
            lines.append(Line(raw, file, offset, None, oversize))
            if len(lines) >= CHUNK:
                yield Batch(lines)
                lines = []
        if lines:
            yield Batch(lines)


def _is_plain_file(stream: BinaryIO) -> bool:
    return isinstance(stream, io.FileIO) and _is_regular(stream)


def _is_regular(stream: BinaryIO) -> bool:
    """A file on disk (plain or gzip): reading it never waits for a writer."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # a stream without a descriptor (tests' BytesIO stdin)
        return False

"""Read log files, gzip'd rotations and stdin, and pick out the candidate lines.

Python cannot afford to look at a million lines one by one, so the reader
works on 64 KiB blocks: ``bytes.find`` (C speed) locates the fixed phrases and
only the lines around a hit are cut out. The block size equals the line limit,
so a line over the limit always spans blocks and is caught at the seam. Memory
stays at a few blocks whatever the input size.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from named_senderr.errors import InputError
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.phrase_scan import NEEDLES, Finder, best_finder
from named_senderr.telemetry import Stats

BLOCK_SIZE = MAX_LINE_BYTES
_GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark


@dataclass(frozen=True, slots=True)
class InputSource:
    """A named input: ``-`` is stdin, anything else a path (plain or gzip)."""

    name: str

    @property
    def is_stdin(self) -> bool:
        return self.name == "-"

    def size(self) -> int | None:
        return None if self.is_stdin else Path(self.name).stat().st_size

    def open(self) -> BinaryIO:
        if self.is_stdin:
            return sys.stdin.buffer
        try:
            raw = open(self.name, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
        except FileNotFoundError as exc:
            raise InputError(f"{self.name}: no such file") from exc
        except IsADirectoryError as exc:
            raise InputError(f"{self.name}: is a directory; name the log files inside it") from exc
        except PermissionError as exc:
            raise InputError(f"{self.name}: permission denied; run as a user that can read it") from exc
        except OSError as exc:
            raise InputError(f"{self.name}: cannot open: {exc.strerror}") from exc
        if raw.read(2) == _GZIP_MAGIC:
            raw.seek(0)
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        raw.seek(0)
        return raw


def candidate_lines(
    stream: BinaryIO,
    stats: Stats,
    on_block: Callable[[], None] | None = None,
    find: Finder | None = None,
    strip_bom: bool = True,
    count_lines: bool = True,
) -> Iterator[tuple[int, bytes, bool]]:
    """Yield ``(offset, line, oversize)`` for each line that may hold a send error.

    ``offset`` is the byte offset of the line in the (decompressed) stream;
    ``line`` has no newline. A line longer than MAX_LINE_BYTES is counted in
    ``stats``; when its head holds a phrase it is yielded, cut to the limit,
    with ``oversize`` set, so that it is rejected rather than parsed. With
    ``strip_bom`` (the stream starts at the file's first byte) a UTF-8 byte-order
    mark there is skipped; the offsets still count it. Without ``count_lines``
    the lines and undecodable lines are not counted: two passes over every byte
    (a third of the reading time) that only a summary reads.
    """
    # A terminal gives what was typed at once and ends at one Ctrl-D; read() would wait for a full block.
    read = stream.read1 if stream.isatty() else stream.read  # type: ignore[attr-defined]
    find = find or default_finder()
    pending = b""  # the unfinished last line of the previous block
    pending_offset = 0
    oversize = False
    offset = 0  # stream offset of the current block
    json_lines: bool | None = None
    at_start = strip_bom
    while True:
        try:
            block = read(BLOCK_SIZE)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"read failed at byte {offset}: {exc}") from exc
        if not block:
            break
        if at_start:  # a UTF-8 byte-order mark (Windows editors, some exports) is not part of the first line
            at_start = False
            if block.startswith(BOM):
                stats.bytes += len(BOM)
                block, offset = block[len(BOM) :], offset + len(BOM)
                if not block:
                    continue
        if on_block is not None:
            on_block()
        if json_lines is None:
            json_lines = starts_json(block)
        stats.bytes += len(block)
        start = 0
        if pending or oversize:
            newline = block.find(b"\n")
            if newline == -1:
                was_oversize = oversize
                pending, oversize = _grow(pending, block, oversize, stats, count_lines)
                if oversize and not was_oversize and has_needle(pending):
                    yield pending_offset, pending, True
                offset += len(block)
                continue
            was_oversize = oversize
            pending, oversize = _grow(pending, block[:newline], oversize, stats, count_lines)
            if oversize and not was_oversize and has_needle(pending):
                yield pending_offset, pending, True
            if not oversize:
                if count_lines:
                    stats.lines += 1
                    _count_undecodable(pending, stats)
                if json_lines or has_needle(pending):
                    yield pending_offset, pending, False
            pending, oversize = b"", False
            start = newline + 1
        end = block.rfind(b"\n") + 1
        if end > start:
            if count_lines:
                stats.lines += block.count(b"\n", start, end)
                if not block.isascii():
                    _count_undecodable(block[start:end], stats)
            if json_lines:
                yield from _all_lines(block, start, end, offset)
            else:
                yield from _hits(block, start, end, offset, find)
        else:
            end = start
        pending = block[end:]
        pending_offset = offset + end
        offset += len(block)
    if pending and not oversize:
        if count_lines:
            stats.lines += 1
            _count_undecodable(pending, stats)
        if json_lines or has_needle(pending):
            yield pending_offset, pending, False


def _grow(pending: bytes, more: bytes, oversize: bool, stats: Stats, count_line: bool) -> tuple[bytes, bool]:
    """Extend the unfinished line; past the limit keep only its head, once counted."""
    if oversize:
        return pending, True
    pending += more
    if len(pending) <= MAX_LINE_BYTES:
        return pending, False
    stats.oversize_lines += 1
    stats.lines += count_line
    return pending[:MAX_LINE_BYTES], True


def _hits(block: bytes, start: int, end: int, offset: int, find: Finder) -> Iterator[tuple[int, bytes, bool]]:
    found: dict[int, int] = {}
    for i in find(block, start, end):
        line_start = block.rfind(b"\n", start, i) + 1 or start
        if line_start not in found:
            found[line_start] = block.find(b"\n", i, end)
    for line_start in sorted(found) if len(found) > 1 else found:
        yield offset + line_start, block[line_start : found[line_start]], False


def _all_lines(block: bytes, start: int, end: int, offset: int) -> Iterator[tuple[int, bytes, bool]]:
    position = start
    for line in block[start : end - 1].split(b"\n"):
        yield offset + position, line, False
        position += len(line) + 1


_finder: Finder | None = None


def default_finder() -> Finder:
    global _finder
    if _finder is None:
        _finder = best_finder()
    return _finder


def starts_json(head: bytes | bytearray) -> bool:
    """A file's first block (its byte-order mark left out) says a log of JSON lines: journald, docker."""
    return head.lstrip()[:1] == b"{"


def has_needle(line: bytes) -> bool:
    return any(needle in line for needle in NEEDLES)


def _count_undecodable(data: bytes, stats: Stats) -> None:
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        stats.undecodable_lines += sum(is_undecodable(line) for line in data.split(b"\n"))


def is_undecodable(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False

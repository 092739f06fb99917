"""The reader of plain log files: 1 MiB reads instead of 64 KiB blocks, the same lines out.

``log_file.candidate_lines`` reads blocks as long as the line limit, so that a
line over the limit always spans blocks and is caught at a seam; that costs a
round of Python (read, scan, seam) per 64 KiB, a sixth of a mixed log's time.
Here one read holds sixteen blocks and one scan covers it. A line over the
limit inside a read holds one of the marks placed every 64 KiB, so looking at
the line around each mark finds them all. Offsets, lines, counters and
progress ticks are those of the block reader: tests/test_large_reads.py
compares the two on generated logs.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

from named_senderr import native
from named_senderr.errors import InputError
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.log_file import BLOCK_SIZE, BOM, default_finder, has_needle, is_undecodable, starts_json
from named_senderr.sources.phrase_scan import Finder
from named_senderr.telemetry import Stats

READ_SIZE = 16 * BLOCK_SIZE
_NON_ASCII = re.compile(rb"[\x80-\xff]")
Found = tuple[int, bytes, bool]


def large_read_candidate_lines(
    stream: BinaryIO,
    stats: Stats,
    on_block: Callable[[], None] | None = None,
    find: Finder | None = None,
    strip_bom: bool = True,
    count_lines: bool = True,
    read_size: int = READ_SIZE,
    offset: int = 0,
    json_lines: bool | None = None,
) -> Iterator[Found]:
    """What ``candidate_lines`` yields for ``stream``, read ``read_size`` bytes at a time.

    One buffer serves every read (``readinto``): a fresh megabyte per read would cost a page fault
    per 4 KiB, more system time than the reading itself. ``offset``: where in its file ``stream`` is, a
    line's start (a part of a file read by another thread); ``json_lines``: what the file's first block
    said, for a part that does not hold it.
    """
    find = find or default_finder()
    buf = bytearray(MAX_LINE_BYTES + read_size)
    view = memoryview(buf)
    kept = 0  # buf[:kept]: the unfinished last line of the previous read
    read_end = offset  # stream offset after the last read
    skipping = False  # inside a line over the limit, already counted: drop up to its newline
    ticked = -(-offset // BLOCK_SIZE)  # the block holding ``offset`` is the part before's to tick
    while True:
        try:
            size = stream.readinto(view[kept : kept + read_size])  # type: ignore[attr-defined]
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"read failed at byte {read_end}: {exc}") from exc
        if not size:
            break
        read_start, read_end = read_end, read_end + size
        base, top, start = read_start - kept, kept + size, 0  # base: the stream offset of buf[0]
        stats.bytes += size
        if read_start == 0 and strip_bom and buf.startswith(BOM, 0, top):  # not part of the first line
            start = len(BOM)
            if top == start:
                continue
        if on_block is not None:
            for _ in range(ticked, -(-read_end // BLOCK_SIZE)):  # once per block the block reader would read
                on_block()
            ticked = -(-read_end // BLOCK_SIZE)
        if json_lines is None:
            json_lines = starts_json(buf[start : min(top, BLOCK_SIZE)])
        if skipping:
            newline = buf.find(b"\n", 0, top)
            if newline == -1:
                continue
            start, skipping = newline + 1, False
        end = buf.rfind(b"\n", start, top) + 1 or start
        if end > start:
            yield from _window(view, start, end, base, stats, find, json_lines)
            if count_lines:
                _count(view, start, end, stats)
        kept = top - end
        if kept > MAX_LINE_BYTES:  # a line over the limit runs on past this read
            stats.oversize_lines += 1
            stats.lines += count_lines
            head = bytes(view[end : end + MAX_LINE_BYTES])
            if has_needle(head):
                yield base + end, head, True
            kept, skipping = 0, True
        else:
            buf[:kept] = buf[end:top]
    if kept and not skipping:
        line = bytes(view[:kept])
        if count_lines:
            stats.lines += 1
            stats.undecodable_lines += is_undecodable(line)
        if json_lines or has_needle(line):
            yield read_end - kept, line, False


def _window(
    view: memoryview, start: int, end: int, base: int, stats: Stats, find: Finder, json_lines: bool | None
) -> Iterator[Found]:
    """The candidates among the whole lines ``view[start:end]``, in order; lines over the limit counted."""
    buf = view.obj
    found: dict[int, Found] = {}
    for line_start in _oversize(buf, start, end):  # type: ignore[arg-type]
        stats.oversize_lines += 1
        head = bytes(view[line_start : line_start + MAX_LINE_BYTES])
        if has_needle(head):
            found[line_start] = base + line_start, head, True
    if json_lines:
        position = start
        for line in bytes(view[start : end - 1]).split(b"\n"):
            if len(line) <= MAX_LINE_BYTES:
                found[position] = base + position, line, False
            position += len(line) + 1
    elif not found:  # the usual window: no line over the limit to merge with
        yield from hit_lines(buf, start, end, find(buf, start, end), base, MAX_LINE_BYTES)  # type: ignore[arg-type]
        return
    else:
        for hit in hit_lines(buf, start, end, find(buf, start, end), base, MAX_LINE_BYTES):  # type: ignore[arg-type]
            found.setdefault(hit[0] - base, hit)
    yield from (found[key] for key in sorted(found)) if len(found) > 1 else found.values()


def python_hit_lines(buf: bytearray, start: int, end: int, hits: list[int], base: int, limit: int) -> list[Found]:
    """Each whole line of ``buf[start:end]`` that holds a hit, once, in order, as ``(base + start, line, False)``.

    A line longer than ``limit`` is left out (the oversize marks find it). The C ``hit_lines``
    (sources/_hit_lines.c) gives the same list; tests/test_large_reads.py compares the two.
    """
    view = memoryview(buf)
    lines: list[Found] = []
    last = -1
    for i in sorted(hits):  # one line's hits are next to each other, its lines in order
        low = i - limit if i - limit > start else start
        line_start = buf.rfind(b"\n", low, i) + 1
        if line_start == 0:
            if low > start:
                continue  # no newline within reach: a line over the limit
            line_start = start
        if line_start != last:
            line_end = buf.find(b"\n", i, end)
            if line_end - line_start <= limit:
                lines.append((base + line_start, bytes(view[line_start:line_end]), False))
                last = line_start
    return lines


_native_hits = native.load("named_senderr.sources._hit_lines")
hit_lines = python_hit_lines if _native_hits is None else _native_hits.hit_lines


def _oversize(buf: bytearray, start: int, end: int) -> Iterator[int]:
    """Where each line of ``buf[start:end]`` over the limit starts: each holds a mark, BLOCK_SIZE apart."""
    for mark in range(start + BLOCK_SIZE, end, BLOCK_SIZE):
        line_start = buf.rfind(b"\n", mark - BLOCK_SIZE, mark) + 1
        if line_start == 0:
            if mark - BLOCK_SIZE > start:
                continue  # the line holds the previous mark too: seen there
            line_start = start
        if buf.find(b"\n", mark, end) - line_start > MAX_LINE_BYTES:
            yield line_start


def python_count_lines(buf: bytearray, start: int, end: int) -> tuple[int, bool]:
    """The newlines of ``buf[start:end]`` and whether every byte there is ASCII.

    The C ``count_lines`` (sources/_line_count.c) gives the same pair without holding the GIL;
    tests/test_native_line_count.py compares the two.
    """
    start, end, _ = slice(start, end).indices(len(buf))  # slice bounds, which re's pos and endpos are not
    return buf.count(b"\n", start, end), buf.isascii() or _NON_ASCII.search(buf, start, end) is None


_native_count = native.load("named_senderr.sources._line_count")
count_lines = python_count_lines if _native_count is None else _native_count.count_lines


def _count(view: memoryview, start: int, end: int, stats: Stats) -> None:
    """Count whole lines, and those that are not UTF-8 (lines over the limit are not decoded)."""
    newlines, ascii = count_lines(view.obj, start, end)  # type: ignore[arg-type]
    stats.lines += newlines
    if ascii:  # the usual case: nothing to decode
        return
    lines = bytes(view[start:end])
    try:
        lines.decode("utf-8")
    except UnicodeDecodeError:
        stats.undecodable_lines += sum(
            len(line) <= MAX_LINE_BYTES and is_undecodable(line) for line in lines.split(b"\n")
        )

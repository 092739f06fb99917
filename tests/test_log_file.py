"""The block reader: offsets, gzip, seams between blocks, and bad bytes."""

from __future__ import annotations

import gzip
import io

import pytest

from named_senderr.errors import InputError
from named_senderr.sources.log_file import BLOCK_SIZE, BOM, InputSource, candidate_lines
from named_senderr.telemetry import Stats

ERROR = b"21-Nov-2026 04:47:35.739 client @0x7f04 192.0.2.7#5353 (a.example): error sending response: would block"
NOISE = b"21-Nov-2026 04:47:35.739 general: info: zone example/IN: loaded serial 7"


def read_all(path):
    stats = Stats()
    with InputSource(str(path)).open() as stream:
        return list(candidate_lines(stream, stats)), stats


def test_offset_points_at_the_first_byte_of_the_line(tmp_path):
    log = tmp_path / "named.log"
    data = b"\n".join([NOISE, ERROR, NOISE, ERROR]) + b"\n"
    log.write_bytes(data)
    lines, stats = read_all(log)
    assert [line for _, line, _ in lines] == [ERROR, ERROR]
    assert all(data[offset : offset + len(line)] == line for offset, line, _ in lines)
    assert stats.lines == 4


def test_lines_across_block_seams_are_found_once_with_their_offsets(tmp_path):
    log = tmp_path / "named.log"
    lines = [ERROR if i % 3 == 0 else NOISE for i in range(3 * BLOCK_SIZE // len(NOISE))]
    data = b"\n".join(lines) + b"\n"
    log.write_bytes(data)
    found, stats = read_all(log)
    assert len(found) == lines.count(ERROR)
    assert all(data[offset : offset + len(line)] == ERROR for offset, line, _ in found)
    assert stats.lines == len(lines)
    assert stats.bytes == len(data)


def test_last_line_without_newline_is_read(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(NOISE + b"\n" + ERROR)
    found, stats = read_all(log)
    assert [line for _, line, _ in found] == [ERROR]
    assert stats.lines == 2


def test_gzip_rotated_log_is_read_transparently(tmp_path):
    log = tmp_path / "named.log.1.gz"
    log.write_bytes(gzip.compress(b"\n".join([NOISE, ERROR]) + b"\n"))
    found, stats = read_all(log)
    assert [line for _, line, _ in found] == [ERROR]
    assert stats.lines == 2


def test_line_over_64_kib_is_counted_and_its_head_flagged_not_parsed(tmp_path):
    log = tmp_path / "named.log"
    huge = ERROR + b" " + b"x" * (2 * BLOCK_SIZE)
    log.write_bytes(b"\n".join([NOISE, huge, ERROR]) + b"\n")
    found, stats = read_all(log)
    assert stats.oversize_lines == 1
    assert stats.lines == 3
    assert [(len(line), oversize) for _, line, oversize in found] == [(BLOCK_SIZE, True), (len(ERROR), False)]


def test_huge_line_without_a_phrase_is_only_counted(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(b"y" * (3 * BLOCK_SIZE) + b"\n" + ERROR + b"\n")
    found, stats = read_all(log)
    assert stats.oversize_lines == 1
    assert [line for _, line, _ in found] == [ERROR]


def test_invalid_utf8_lines_are_counted(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(NOISE + b"\xc3(\n" + ERROR + b"\xff\n")
    found, stats = read_all(log)
    assert stats.undecodable_lines == 2
    assert len(found) == 1


def test_missing_file_is_an_input_error_naming_it(tmp_path):
    with pytest.raises(InputError, match=r"nope\.log: no such file"):
        InputSource(str(tmp_path / "nope.log")).open()


def test_directory_is_an_input_error_that_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        InputSource(str(tmp_path)).open()


def test_truncated_gzip_is_an_input_error_not_a_crash(tmp_path):
    log = tmp_path / "named.log.gz"
    log.write_bytes(gzip.compress(ERROR * 1000)[:-20])
    with pytest.raises(InputError, match="read failed"):
        read_all(log)


def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_line(tmp_path):
    log = tmp_path / "named.log"
    log.write_bytes(BOM + ERROR + b"\n" + ERROR + b"\n")
    lines, stats = read_all(log)
    assert [(offset, line) for offset, line, _ in lines] == [(3, ERROR), (3 + len(ERROR) + 1, ERROR)]
    assert stats.bytes == log.stat().st_size


def test_a_stream_that_starts_inside_a_file_keeps_a_byte_order_mark(tmp_path):
    """The follower reads from an offset: there the same bytes are data, not a mark."""
    lines = list(candidate_lines(io.BytesIO(BOM + ERROR + b"\n"), Stats(), strip_bom=False))
    assert [line for _, line, _ in lines] == [BOM + ERROR]


def test_without_line_counting_the_same_lines_come_out_and_only_line_counters_stay_zero(tmp_path):
    long_head = b"x" * 100 + b" send failed: " + b"y" * (2 * BLOCK_SIZE)
    lines = [NOISE, ERROR, b"\xff" + ERROR, long_head, ERROR, NOISE * 900, ERROR[:-3]]
    data = b"\n".join(lines * 40)  # many blocks; the last line has no newline
    counted, uncounted = Stats(), Stats()
    found = list(candidate_lines(io.BytesIO(data), counted))
    assert list(candidate_lines(io.BytesIO(data), uncounted, count_lines=False)) == found
    assert (counted.lines, counted.undecodable_lines) == (len(lines) * 40, 40)
    assert (uncounted.lines, uncounted.undecodable_lines) == (0, 0)
    assert (uncounted.bytes, uncounted.oversize_lines) == (counted.bytes, counted.oversize_lines) == (len(data), 40)

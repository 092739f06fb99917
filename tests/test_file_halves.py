"""A large file read as two halves by two threads gives what one reader gives: lines, offsets, counters."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.sources.files import FileSource
from named_senderr.sources.log_file import BOM
from named_senderr.telemetry import Stats
from tests.test_large_reads import ERROR, JSON, NOISE, generated_log

NEVER = 2**62


def read(path: Path, split_size: int, count_lines: bool = True) -> tuple[list[tuple], Stats]:
    stats = Stats()
    source = FileSource((str(path),), stats, print, count_lines=count_lines, split_size=split_size)
    lines = [(line.offset, line.data, line.oversize) for batch in source.batches() for line in batch.lines]
    return lines, stats


def both(path: Path, count_lines: bool = True) -> tuple[tuple, tuple]:
    return read(path, 1, count_lines), read(path, NEVER, count_lines)


@pytest.mark.parametrize("seed", range(4))
def test_halves_give_one_readers_lines_and_counters(tmp_path: Path, seed: int) -> None:
    log = tmp_path / "named.log"
    log.write_bytes(generated_log(seed, 6000) + b"\n")
    halves, whole = both(log)
    assert halves == whole
    assert len(whole[0]) > 100


def test_halves_agree_without_line_counting(tmp_path: Path) -> None:
    log = tmp_path / "named.log"
    log.write_bytes(generated_log(9, 6000))  # and no final newline
    assert both(log, count_lines=False)[0] == both(log, count_lines=False)[1]


def test_a_byte_order_mark_is_stripped_once(tmp_path: Path) -> None:
    log = tmp_path / "named.log"
    log.write_bytes(BOM + b"\n".join([ERROR] * 4000) + b"\n")
    halves, whole = both(log)
    assert halves == whole
    assert halves[0][0] == (len(BOM), ERROR, False)


def test_a_log_of_json_lines_is_read_as_json_in_both_halves(tmp_path: Path) -> None:
    log = tmp_path / "journal.json"
    log.write_bytes(b"\n".join([JSON if i % 3 else b'{"MESSAGE": "zone loaded"}' for i in range(6000)]) + b"\n")
    halves, whole = both(log)
    assert halves == whole
    assert len(halves[0]) == 6000


def test_a_line_over_the_limit_across_the_middle_keeps_the_file_whole(tmp_path: Path) -> None:
    log = tmp_path / "named.log"
    log.write_bytes(b"\n".join([NOISE] * 10) + b"\n" + ERROR + b"x" * (4 * MAX_LINE_BYTES) + b"\n" + ERROR + b"\n")
    halves, whole = both(log)
    assert halves == whole
    assert halves[1].oversize_lines == 1


def test_a_large_file_is_read_by_two_threads(tmp_path: Path) -> None:
    log = tmp_path / "named.log"
    log.write_bytes(b"\n".join([ERROR] * 20000) + b"\n")
    readers: set[int] = set()
    source = FileSource((str(log),), Stats(), print, split_size=1)
    for _ in source.batches():
        readers |= {t.ident or 0 for t in threading.enumerate() if t.name == "read-ahead"}
    assert len(readers) == 2

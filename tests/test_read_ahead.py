"""Reading ahead in a thread: the same items in the same order, errors where they happened, nothing left running."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from named_senderr.sources.files import FileSource
from named_senderr.sources.read_ahead import ReadAhead
from named_senderr.telemetry import Stats
from tests.polling import wait_until


def test_items_come_out_in_the_order_they_were_made() -> None:
    assert list(ReadAhead(iter(range(1000)))) == list(range(1000))


def test_an_error_of_the_reader_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in ReadAhead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_the_reader_runs_at_most_depth_items_ahead() -> None:
    made = []

    def items() -> Iterator[int]:
        for i in range(100):
            made.append(i)
            yield i

    ahead = ReadAhead(items(), depth=2)
    taken = iter(ahead)
    assert next(taken) == 0
    wait_until(lambda: len(made) >= 4)  # 0 taken, 1 and 2 waiting, 3 in the reader's hand
    threading.Event().wait(0.2)  # were it unbounded, it would have made all 100 by now
    assert len(made) == 4
    ahead.close()


def test_stopping_early_ends_the_reader_and_runs_its_cleanup() -> None:
    cleaned = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            cleaned.set()

    ahead = ReadAhead(items())
    taken = iter(ahead)
    assert next(taken) == 0
    ahead.close()
    assert cleaned.is_set()
    assert not any(thread.name == "read-ahead" for thread in threading.enumerate())


def test_a_file_of_several_batches_comes_out_whole_and_in_order(tmp_path: Path) -> None:
    text = "21-Nov-2026 04:48:37.002 client @0x7f 192.0.2.{}#53 (a.example): error sending response: would block\n"
    lines = [text.format(i % 250) for i in range(5000)]  # 2.5 batches of the file source
    log = tmp_path / "named.log"
    log.write_text("".join(lines))
    batches = list(FileSource((str(log),), Stats(), print).batches())
    assert len(batches) == 3
    read = [(line.offset, line.data.decode() + "\n") for batch in batches for line in batch.lines]
    offsets = [sum(map(len, lines[:i])) for i in range(len(lines))]
    assert read == list(zip(offsets, lines, strict=True))

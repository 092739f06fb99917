"""NdjsonWriter: the lines of ``parse``, ``tail``, ``listen`` and ``serve`` written whole, in order, in parts."""

from __future__ import annotations

import io

import orjson
import pytest

from named_senderr.sinks.stdout import NdjsonWriter


class KeepingStream(io.RawIOBase):
    """Keeps each object it is given as it was given, as a stream that queues its writes may."""

    def __init__(self, fail_first: int = 0) -> None:
        self.given: list[bytes | bytearray] = []
        self.copies: list[bytes] = []  # what each object held when it was written
        self._fail = fail_first

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        if self._fail:
            self._fail -= 1
            raise BlockingIOError("full")
        self.given.append(data)
        self.copies.append(bytes(data))
        return len(data)


def lines(count: int) -> list[bytes]:
    return [b'{"n":%d}\n' % n for n in range(count)]


def test_a_large_batch_is_written_in_parts_of_512_lines_in_order() -> None:
    stream = KeepingStream()
    writer = NdjsonWriter(stream)
    writer.write_lines(iter(lines(1300)))
    writer.flush()
    assert [copy.count(b"\n") for copy in stream.copies] == [512, 512, 276]
    assert b"".join(stream.copies) == b"".join(lines(1300))


def test_what_a_stream_was_given_stays_as_it_was_after_later_writes() -> None:
    stream = KeepingStream()
    writer = NdjsonWriter(stream)
    writer.write_lines(lines(600))
    writer.write_lines(lines(3))
    writer.flush()
    assert [bytes(given) for given in stream.given] == stream.copies


def test_records_are_encoded_as_orjson_lines() -> None:
    stream = io.BytesIO()
    writer = NdjsonWriter(stream)
    records = [{"n": n, "hint": "h" * n, "none": None} for n in range(700)]
    writer.write_all(iter(records))
    writer.flush()
    assert stream.getvalue() == b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


def test_lines_a_failed_write_did_not_take_are_written_by_the_next_flush() -> None:
    stream = KeepingStream(fail_first=1)
    writer = NdjsonWriter(stream)
    writer.write_lines(lines(10))
    with pytest.raises(BlockingIOError):
        writer.flush()
    writer.flush()
    assert b"".join(stream.copies) == b"".join(lines(10))

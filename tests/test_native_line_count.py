"""The C ``count_lines`` gives the reference's newline count and ASCII verdict for any buffer and window."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.sources import large_reads
from named_senderr.sources.large_reads import python_count_lines
from tests.native import compiled

# Newlines, ASCII filler and bytes with the top bit set, in runs long enough to cross many 16-byte strides.
PIECES = [b"\n", b"x", b"\x7f", b"\x80", b"\xff", b"\xc3\xa9", b"\n" * 17, b"y" * 15, b"z" * 33]


@st.composite
def windows(draw: st.DrawFn) -> tuple[bytearray, int, int]:
    """A buffer of newlines, ASCII and non-ASCII bytes, and a window, in or out of range, negative or not."""
    buf = bytearray(b"".join(draw(st.lists(st.sampled_from(PIECES), max_size=200))))
    start = draw(st.integers(-len(buf) - 3, len(buf) + 3))
    end = draw(st.integers(-len(buf) - 3, len(buf) + 3))
    return buf, start, end


@settings(max_examples=3000, deadline=None)
@given(windows())
def test_the_c_count_and_ascii_verdict_are_the_references(window: tuple[bytearray, int, int]) -> None:
    count_lines = compiled("named_senderr.sources._line_count").count_lines
    buf, start, end = window
    assert count_lines(buf, start, end) == python_count_lines(buf, start, end)


def test_more_than_255_strides_of_newlines_are_all_counted() -> None:
    count_lines = compiled("named_senderr.sources._line_count").count_lines
    buf = bytearray(b"\n" * (16 * 255 * 3 + 7))
    assert count_lines(buf, 0, len(buf)) == (len(buf), True)


def test_one_byte_with_the_top_bit_at_any_offset_is_seen() -> None:
    count_lines = compiled("named_senderr.sources._line_count").count_lines
    for offset in range(70):
        buf = bytearray(b"a\n" * 35)
        buf[offset] = 0xE9
        assert count_lines(buf, 0, len(buf)) == (python_count_lines(buf, 0, len(buf))[0], False)


def test_non_ascii_bytes_outside_the_window_do_not_count() -> None:
    count_lines = compiled("named_senderr.sources._line_count").count_lines
    buf = bytearray(b"\xff" * 20 + b"line\n" * 10 + b"\xff" * 20)
    assert count_lines(buf, 20, 70) == (10, True)


def test_threads_count_at_once_with_the_gil_released() -> None:
    count_lines = compiled("named_senderr.sources._line_count").count_lines
    block = bytearray(b"0123456789abcde\n" * 50_000)
    results: list[tuple[int, bool]] = []

    def count() -> None:
        results.extend(count_lines(block, 0, len(block)) for _ in range(50))

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [(50_000, True)] * 200


def test_the_reader_counts_with_the_c_function_when_built() -> None:
    module = compiled("named_senderr.sources._line_count")
    assert large_reads.count_lines is module.count_lines

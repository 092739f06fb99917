"""The C ``hit_lines`` gives the Python reference's lines for any buffer and hits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.sources import large_reads
from named_senderr.sources.large_reads import python_hit_lines
from tests.native import compiled

LIMIT = 40  # small, so that generated buffers hold lines over it


@st.composite
def windows(draw: st.DrawFn) -> tuple[bytearray, int, int, list[int]]:
    """A buffer of short and over-long lines, a window inside it, and hits anywhere in the window."""
    pieces = draw(st.lists(st.sampled_from([b"\n", b"a", b"bb", b"x" * 25, b"y" * 60, b"\r"]), max_size=60))
    buf = bytearray(b"".join(pieces))
    start = draw(st.integers(0, len(buf)))
    end = draw(st.integers(start, len(buf)))
    hits = draw(st.lists(st.integers(start, max(start, end - 1)), max_size=20)) if end > start else []
    return buf, start, end, hits


@settings(max_examples=2000, deadline=None)
@given(windows(), st.integers(0, 10**12))
def test_the_c_lines_are_the_references(window: tuple[bytearray, int, int, list[int]], base: int) -> None:
    hit_lines = compiled("named_senderr.sources._hit_lines").hit_lines
    buf, start, end, hits = window
    assert hit_lines(buf, start, end, hits, base, LIMIT) == python_hit_lines(buf, start, end, hits, base, LIMIT)


def test_unsorted_hits_give_the_lines_in_order() -> None:
    hit_lines = compiled("named_senderr.sources._hit_lines").hit_lines
    buf = bytearray(b"one\ntwo\nthree\n")
    assert hit_lines(buf, 0, len(buf), [9, 0, 5, 1], 100, LIMIT) == [
        (100, b"one", False), (104, b"two", False), (108, b"three", False)
    ]  # fmt: skip


def test_a_hit_outside_the_buffer_is_refused() -> None:
    hit_lines = compiled("named_senderr.sources._hit_lines").hit_lines
    with pytest.raises(ValueError, match="outside the buffer"):
        hit_lines(bytearray(b"abc\n"), 0, 4, [99], 0, LIMIT)


def test_the_reader_uses_the_c_lines_when_built() -> None:
    assert large_reads.hit_lines is compiled("named_senderr.sources._hit_lines").hit_lines

"""The C ``find_phrases`` finds the reference's phrase positions in any buffer and window."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.sources import log_file, phrase_scan
from named_senderr.sources.phrase_scan import NEEDLES, find_with_bytes
from tests.native import compiled

# Pieces that build every needle, its near misses (case, a cut anchor) and overlaps between needles.
PIECES = [*NEEDLES, b"send", b"Send", b"SEND", b"sen", b"end", b"error ", b"ing", b" failed", b"\n", b"x", b"\xff"]


@st.composite
def windows(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """A buffer of phrases, their pieces and filler, and a window, in or out of range, negative or not."""
    buf = b"".join(draw(st.lists(st.sampled_from(PIECES), max_size=40)))
    start = draw(st.integers(-len(buf) - 3, len(buf) + 3))
    end = draw(st.integers(-len(buf) - 3, len(buf) + 3))
    return buf, start, end


@settings(max_examples=3000, deadline=None)
@given(windows())
def test_the_c_positions_are_the_references(window: tuple[bytes, int, int]) -> None:
    find_phrases = compiled("named_senderr.sources._phrase_scan").find_phrases
    buf, start, end = window
    assert sorted(find_phrases(buf, start, end, NEEDLES)) == sorted(find_with_bytes(buf, start, end))


def test_a_phrase_across_the_sixteen_byte_stride_is_found_at_every_offset() -> None:
    find_phrases = compiled("named_senderr.sources._phrase_scan").find_phrases
    for offset in range(40):
        buf = bytearray(b"x" * offset + b"error sending response" + b"y" * 40)
        assert find_phrases(buf, 0, len(buf), NEEDLES) == [offset]


def test_a_phrase_cut_by_the_window_is_not_found() -> None:
    find_phrases = compiled("named_senderr.sources._phrase_scan").find_phrases
    buf = b"..send failed.."
    assert find_phrases(buf, 2, 13, NEEDLES) == [2]
    assert find_phrases(buf, 3, 13, NEEDLES) == []
    assert find_phrases(buf, 2, 12, NEEDLES) == []


def test_a_phrase_without_the_anchor_is_refused() -> None:
    find_phrases = compiled("named_senderr.sources._phrase_scan").find_phrases
    with pytest.raises(ValueError, match="holds neither b'send' nor b'Send'"):
        find_phrases(b"error sending", 0, 13, (b"error sending", b"would block"))


def test_threads_scan_at_once_with_the_gil_released() -> None:
    find_phrases = compiled("named_senderr.sources._phrase_scan").find_phrases
    block = b"x" * 100_000 + b"Sending UDP messages failed" + b"y" * 100_000
    results: list[list[int]] = []

    def scan() -> None:
        results.extend(find_phrases(block, 0, len(block), NEEDLES) for _ in range(200))

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [[100_000]] * 800


def test_the_reader_uses_the_c_finder_when_built() -> None:
    compiled("named_senderr.sources._phrase_scan")
    block = b"a\nclient @0x1 192.0.2.1#53 (x.example): send failed: would block\n"
    assert phrase_scan.best_finder()(block, 0, len(block)) == [block.index(b"send failed")]
    native_finder = phrase_scan.make_native_finder()
    assert native_finder is not None
    assert log_file.default_finder().__qualname__ == native_finder.__qualname__

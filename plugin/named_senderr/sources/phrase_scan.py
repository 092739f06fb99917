"""Find the send-error phrases in a block of bytes, as fast as this machine allows.

The C ``find_phrases`` (sources/_phrase_scan.c, built where a compiler is at
hand) finds all needles in one pass without the GIL, from their common anchor
``send``/``Send``; else Hyperscan (SIMD multi-literal search, x86-64 Linux
wheels) does, imported only then; elsewhere ``bytes.find`` runs once per
needle. All return the same hits: the tests run each against the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from named_senderr import native

# Supersets of the parser's candidate markers, as the file reader searches them; each holds "send" or "Send".
NEEDLES = (
    b"error sending",
    b"send failed",
    b"Sending UDP messages failed",
    b"send exceeded",
    b"sending zone data",
    b"': send:",
    b"internal_send: ",
)

Finder = Callable[[bytes, int, int], list[int]]


def find_with_bytes(block: bytes, start: int, end: int) -> list[int]:
    """Positions of every needle in ``block[start:end]``, one ``bytes.find`` pass per needle."""
    hits = []
    for needle in NEEDLES:
        i = block.find(needle, start, end)
        while i != -1:
            hits.append(i)
            i = block.find(needle, i + 1, end)
    return hits


def make_hyperscan_finder() -> Finder | None:
    """A one-pass finder, or None when hyperscan is not installed or cannot start."""
    try:
        import hyperscan
    except ImportError:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[needle.replace(b" ", b"\\x20") for needle in NEEDLES],
        ids=list(range(len(NEEDLES))),
        elements=len(NEEDLES),
        flags=[0] * len(NEEDLES),
    )
    scratches = threading.local()  # a scratch serves one scan at a time: one per thread (two files read at once)
    lengths = [len(needle) for needle in NEEDLES]

    def find(block: bytes, start: int, end: int) -> list[int]:
        hits: list[int] = []

        def on_match(needle: int, _from: int, to: int, _flags: int, _context: object) -> None:
            hits.append(start + to - lengths[needle])

        scratch = getattr(scratches, "scratch", None)
        if scratch is None:
            scratch = scratches.scratch = hyperscan.Scratch(database)
        with memoryview(block)[start:end] as part:  # only the range asked: no copy, no hits to sort out
            database.scan(
                part,  # type: ignore[type-var]  # the binding takes any buffer
                match_event_handler=on_match,
                scratch=scratch,
            )
        return hits

    return find


def make_native_finder() -> Finder | None:
    """The C one-pass finder, or None when it was not built (or the pure-Python path is asked for)."""
    compiled = native.load("named_senderr.sources._phrase_scan")
    if compiled is None:
        return None
    find_phrases = compiled.find_phrases

    def find(block: bytes, start: int, end: int) -> list[int]:
        return find_phrases(block, start, end, NEEDLES)

    return find


def best_finder() -> Finder:
    return make_native_finder() or make_hyperscan_finder() or find_with_bytes

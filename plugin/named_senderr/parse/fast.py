"""The Python side of ``_named_fast.c``: every object the compiled loop reads, named here, handed over once.

The C loop runs ParseLines' loop over a whole batch on the happy path only and
hands every other line to ``fallback`` (engine/transforms.parse_line), the
reference, for that line alone. It reads the parser's own caches (the reasons of
the texts seen, the timestamp heads converted) and calls ``to_rfc3339`` on a
miss, so both paths share one state and give one result.

Where it was built with PCRE2, the loop matches printable-ASCII lines with
PCRE2's JIT on each pattern's source that ``pcre2_source`` passes: only syntax
that reads the same in PCRE2 and in Python's ``re`` on such lines. A pattern
PCRE2 refuses stays on ``re``, said once in the log.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable

from named_senderr import native
from named_senderr.event import Event
from named_senderr.lines import Line
from named_senderr.parse.grok import LinePattern
from named_senderr.parse.named import FIELDS, MAX_LINE_BYTES, MAX_QNAME_CHARS, NamedLineParser, Rejection

Fallback = Callable[[Line, str | None, str], Event | Rejection | None]
# (lines, default host, ingested) -> (events, [(rejection, its line), ...])
Loop = Callable[[list[Line], str | None, str], tuple[list[Event], list[tuple[Rejection, Line]]]]

# After a backslash: punctuation means itself, and these classes match the same ASCII characters in both engines.
SAME_ESCAPES = frozenset("sSdDwW") | frozenset("\\.[](){}|*+?^$/-#%@:'\" ")
SAME_GROUPS = ("(?:", "(?P<", "(?=", "(?!", "(?<=", "(?<!")


def pcre2_source(source: str) -> str | None:
    """``source`` for PCRE2, or None where it has escapes or groups PCRE2 could read otherwise (or inline flags)."""
    if not source.isascii():
        return None
    at = 0
    while at < len(source):
        if source[at] == "\\":
            if source[at + 1 : at + 2] not in SAME_ESCAPES:  # "" at the end is not in it
                return None
            at += 2
            continue
        if source.startswith("(?", at) and not source.startswith(SAME_GROUPS, at):
            return None
        at += 1
    return source


def lazy_match(pattern: LinePattern) -> Callable[[str], re.Match[str] | None]:
    """``pattern.regex.match``, compiling only if a line ever needs ``re`` (PCRE2 serves every ASCII one)."""

    def match(text: str) -> re.Match[str] | None:
        return pattern.regex.match(text)

    return match


def _for_loop(pattern: LinePattern, pcre2: bool) -> tuple[Callable, tuple[int, ...], str | None]:
    source = pcre2_source(pattern.source) if pcre2 else None
    match = lazy_match(pattern) if source is not None else pattern.regex.match
    return match, tuple(pattern.groupindex.get(name, 0) - 1 for name in FIELDS), source


@functools.cache
def say_refused(why: str) -> None:
    import logging  # only here: importing it at start cost every short run 4 ms

    logging.getLogger(__name__).warning("parse loop: %s", why)


def compiled_loop(parser: NamedLineParser, fallback: Fallback) -> Loop | None:
    """The C loop for ``parser``, or None: not built, the pure path asked for, or a parser of another kind."""
    fast = native.load("named_senderr.parse._named_fast")
    if fast is None or type(parser) is not NamedLineParser:  # a subclass may parse otherwise
        return None
    loop: Loop = fast.Loop(
        fallback=fallback,
        # each pattern's match(), per FIELDS name its index in match.groups() (-1: no such capture), its PCRE2 source
        patterns=[_for_loop(pattern, fast.PCRE2) for pattern in parser.patterns],
        groups=re.Match.groups,
        reasons=parser._reasons,
        classify=parser.classify,
        time_cache=parser.timestamps._cache,
        time_minutes=parser.timestamps._minutes,
        to_rfc3339=parser.timestamps.to_rfc3339,
        event=Event,
        event_fields=tuple(field.name for field in dataclasses.fields(Event)),
        line=Line,
        fields=FIELDS,
        max_line_bytes=MAX_LINE_BYTES,
        max_qname_chars=MAX_QNAME_CHARS,
    )
    if fast.PCRE2:
        for why in loop.pcre2_refused:  # type: ignore[attr-defined]
            say_refused(why)
    return loop

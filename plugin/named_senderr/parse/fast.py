"""The Python side of ``_named_fast.c``: every object the compiled loop reads, named here, handed over once.

The C loop runs ParseLines' loop over a whole batch on the happy path only and
hands every other line to ``fallback`` (engine/transforms.parse_line), the
reference, for that line alone. It reads the parser's own caches (the reasons of
the texts seen, the timestamp heads converted) and calls ``to_rfc3339`` on a
miss, so both paths share one state and give one result.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from named_senderr import native
from named_senderr.event import Event
from named_senderr.lines import Line
from named_senderr.parse.named import FIELDS, MAX_LINE_BYTES, MAX_QNAME_CHARS, NamedLineParser, Rejection

Fallback = Callable[[Line, str | None, str], Event | Rejection | None]
# (lines, default host, ingested) -> (events, [(rejection, its line), ...])
Loop = Callable[[list[Line], str | None, str], tuple[list[Event], list[tuple[Rejection, Line]]]]


def compiled_loop(parser: NamedLineParser, fallback: Fallback) -> Loop | None:
    """The C loop for ``parser``, or None: not built, the pure path asked for, or a parser of another kind."""
    fast = native.load("named_senderr.parse._named_fast")
    if fast is None or type(parser) is not NamedLineParser:  # a subclass may parse otherwise
        return None
    loop: Loop = fast.Loop(
        fallback=fallback,
        # each pattern's bound match() and, per FIELDS name, its index in match.groups() (-1: no such capture)
        patterns=[
            (regex.match, tuple(regex.groupindex.get(name, 0) - 1 for name in FIELDS)) for regex in parser.patterns
        ],
        groups=re.Match.groups,
        reasons=parser._reasons,
        time_cache=parser.timestamps._cache,
        to_rfc3339=parser.timestamps.to_rfc3339,
        event=Event,
        event_fields=tuple(field.name for field in dataclasses.fields(Event)),
        line=Line,
        fields=FIELDS,
        max_line_bytes=MAX_LINE_BYTES,
        max_qname_chars=MAX_QNAME_CHARS,
    )
    return loop

"""The transform chain every source goes through: parse -> privacy -> rollup.

Parsing turns raw lines into events and is the one place where a rejected
candidate is counted and, with a rejects file, kept: whatever the source, a
rejected line never travels on as an event. Privacy and rollup follow as
stages (engine/stages.py), built only when asked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import orjson

from named_senderr.engine.contracts import Stage
from named_senderr.event import Event, ingest_now
from named_senderr.lines import Line
from named_senderr.parse.fast import Loop, compiled_loop
from named_senderr.parse.named import MAX_LINE_BYTES, NamedLineParser, Rejection
from named_senderr.telemetry import Stats


@dataclass
class ParseLines:
    """Raw lines to events; every candidate counted as an event or a rejection by reason."""

    parser: NamedLineParser
    stats: Stats
    host: str | None = None  # host.name for lines whose text and transport carry none
    rejects: IO[bytes] | None = None  # any binary file: unbuffered for endless runs, buffered otherwise
    on_reject: Callable[[Rejection, Line], None] | None = None  # a source that passes rejected records on itself
    _loop: Loop = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = compiled_loop(self.parser, functools.partial(parse_line, self.parser))
        self._loop = compiled or functools.partial(pure_loop, self.parser)

    def __call__(self, lines: list[Line]) -> list[Event]:
        """The batch's events, each stamped with the time it was taken in (long runs: not the start's).

        The counters move once per batch: per-line work is the parse and the provenance only.
        """
        events, rejected = self._loop(lines, self.host, ingest_now())
        for rejection, line in rejected:
            self.reject(rejection, line)
        self.stats.candidates += len(events) + len(rejected)
        self.stats.events_by_reason.update([event.reason for event in events])
        return events

    def reject(self, rejection: Rejection, line: Line) -> None:
        self.stats.rejected_by_reason[rejection.reason] += 1
        if self.rejects is not None:
            record = {"reason": rejection.reason, "detail": rejection.detail, "file": line.file,
                      "offset": line.offset, "line": rejection.line}  # fmt: skip
            self.rejects.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        if self.on_reject is not None:
            self.on_reject(rejection, line)


def parse_line(
    parser: NamedLineParser, line: Line, default_host: str | None, ingested: str
) -> Event | Rejection | None:
    """One line's event with its provenance, its rejection, or None (no candidate): the reference.

    The compiled loop (parse/_named_fast.c) hands it every line off its happy path.
    """
    data = line.data
    if line.oversize or len(data) > MAX_LINE_BYTES:
        return oversize(data)
    result = parser.parse_bytes(data)
    if isinstance(result, Event):
        result.file, result.offset = line.file, line.offset
        result.host = result.host or line.host or default_host
        result.timestamp = result.timestamp or line.time
        result.ingested = ingested
    return result


def pure_loop(
    parser: NamedLineParser, lines: list[Line], default_host: str | None, ingested: str
) -> tuple[list[Event], list[tuple[Rejection, Line]]]:
    """The batch's events and its rejections with their lines, in Python: the compiled loop's reference."""
    events: list[Event] = []
    rejected: list[tuple[Rejection, Line]] = []
    for line in lines:
        result = parse_line(parser, line, default_host, ingested)
        if isinstance(result, Event):
            events.append(result)
        elif result is not None:
            rejected.append((result, line))
    return events, rejected


def oversize(head: bytes) -> Rejection:
    detail = f"line longer than {MAX_LINE_BYTES} bytes; its first {MAX_LINE_BYTES} bytes are kept"
    return Rejection("line_too_long", detail, head[:MAX_LINE_BYTES].decode("utf-8", "backslashreplace"))


def command_line_stages(
    client_ip: str | None, qname: str | None, window: float | None, clock: Callable[[], float]
) -> list[Stage]:
    """The options every command takes: privacy first (so rollup groups by the reduced address), then rollup.

    Their modules are imported only when an option asks for one: ``parse`` without them starts sooner.
    """
    if client_ip is None and qname is None and window is None:
        return []
    from named_senderr.engine.stages import RollupConfig, TransformConfig, stages
    from named_senderr.normalize.privacy import PrivacyConfig

    transforms: list[TransformConfig] = [PrivacyConfig(client_ip, qname)]
    transforms += [RollupConfig(window)] if window is not None else []
    return stages(transforms, clock)

"""Wires a run together: sources -> parse -> normalize -> sink, with counters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import BinaryIO

import orjson

from named_senderr.config import ParseConfig
from named_senderr.errors import InputError
from named_senderr.event import Event, to_ecs, to_flat
from named_senderr.normalize.privacy import PrivacyConfig, compile_privacy
from named_senderr.normalize.rollup import stages
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import MAX_LINE_BYTES, NamedLineParser, Rejection
from named_senderr.sinks.stdout import NdjsonWriter
from named_senderr.sources.log_file import InputSource, candidate_lines
from named_senderr.telemetry import Stats

Warn = Callable[[str], None]
ProgressFactory = Callable[[InputSource], "Callable[[], None] | None"]


def run_parse(config: ParseConfig, out: BinaryIO, warn: Warn, progress: ProgressFactory | None = None) -> Stats:
    """Parse every input of ``config`` to NDJSON on ``out``; unreadable inputs are warned and counted."""
    stats = Stats()
    parser = NamedLineParser(TimestampNormalizer(resolve_zone(config.timezone)))
    render = _renderer(config.format)
    privacy = compile_privacy(PrivacyConfig(config.client_ip, config.qname))  # reads the key before any input
    writer = NdjsonWriter(out)
    with ExitStack() as stack:
        rejects = stack.enter_context(open(config.rejects, "wb")) if config.rejects else None
        events = read_events(config.inputs, parser, config.host, stats, warn, progress, rejects)
        for event in stages(events, privacy, config.rollup):
            writer.write(render(event))
    writer.flush()
    return stats


def read_events(
    inputs: Iterable[str],
    parser: NamedLineParser,
    host: str | None,
    stats: Stats,
    warn: Warn,
    progress: ProgressFactory | None = None,
    rejects: BinaryIO | None = None,
) -> Iterator[Event]:
    """The events of every input in order, shared by ``parse`` and ``ship``; rejections go to ``rejects``."""
    for name in inputs:
        source = InputSource(name)
        stats.inputs += 1
        try:
            stream = source.open()
            try:
                lines = candidate_lines(stream, stats, progress(source) if progress else None)
                for offset, raw, oversize in lines:
                    result = _oversize(raw) if oversize else parser.parse_bytes(raw)
                    if result is None:
                        continue
                    stats.candidates += 1
                    if isinstance(result, Event):
                        result.file = None if source.is_stdin else name
                        result.offset = offset
                        result.host = result.host or host
                        stats.events_by_reason[result.reason] += 1
                        yield result
                    else:
                        stats.rejected_by_reason[result.reason] += 1
                        if rejects is not None:
                            rejects.write(_reject_record(result, source, offset))
            finally:
                if not source.is_stdin:
                    stream.close()
        except InputError as exc:
            stats.unreadable_inputs += 1
            warn(str(exc) if str(exc).startswith(name) else f"{name}: {exc}")


def _renderer(name: str) -> Callable[[Event], dict]:
    if name == "flat":
        return to_flat
    ingest_time = ingest_now()
    return lambda event: to_ecs(event, ingest_time)


def ingest_now() -> str:
    """The run's ingest time, RFC 3339 UTC in milliseconds: the time of events whose line had none."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _oversize(head: bytes) -> Rejection:
    detail = f"line longer than {MAX_LINE_BYTES} bytes; its first {MAX_LINE_BYTES} bytes are kept"
    return Rejection("line_too_long", detail, head.decode("utf-8", "backslashreplace"))


def _reject_record(rejection: Rejection, source: InputSource, offset: int) -> bytes:
    record = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "file": None if source.is_stdin else source.name,
        "offset": offset,
        "line": rejection.line,
    }
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)

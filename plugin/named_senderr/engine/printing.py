"""Pipelines that print NDJSON events: ``parse`` (files once); the streaming commands print the same way.

Kept free of the shipping machinery (HTTP client, queue, sinks): ``parse``
starts with only what it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import BinaryIO

import orjson

from named_senderr.engine.runner import Runner
from named_senderr.engine.transforms import ParseLines, command_line_stages
from named_senderr.event import Event, ecs_json, ingest_now, to_ecs, to_flat
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.settings.parse import ParseConfig
from named_senderr.sinks.stream import StreamDelivery
from named_senderr.sources.files import FileSource, ProgressFactory
from named_senderr.telemetry import Stats

Warn = Callable[[str], None]


def renderer(name: str) -> Callable[[Event], dict]:
    if name == "flat":
        return to_flat
    ingest_time = ingest_now()
    return lambda event: to_ecs(event, ingest_time)


def line_encoder(name: str) -> Callable[[Event], bytes]:
    """Each event's NDJSON line as ``renderer(name)`` would give it, without building the record (ECS)."""
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    if name == "flat":
        return lambda event: dumps(to_flat(event), option=option)
    ingest_time = ingest_now()
    return lambda event: ecs_json(event, ingest_time, newline=True)


def run_parse(config: ParseConfig, out: BinaryIO, warn: Warn, progress: ProgressFactory | None = None) -> Stats:
    """Parse every input of ``config`` to NDJSON on ``out``; unreadable inputs are warned and counted."""
    stats = Stats()
    chain = command_line_stages(config.client_ip, config.qname, config.rollup, time.monotonic)  # keys read now
    with ExitStack() as stack:
        rejects = stack.enter_context(open(config.rejects, "wb")) if config.rejects else None
        parse = ParseLines(NamedLineParser(TimestampNormalizer(resolve_zone(config.timezone))), stats, config.host,
                           rejects)  # fmt: skip
        source = FileSource(config.inputs, stats, warn, progress, count_lines=config.count_lines)
        delivery = StreamDelivery(out, renderer(config.format), flush_every=False, line=line_encoder(config.format))
        Runner([source], parse, chain, delivery).run()
    return stats

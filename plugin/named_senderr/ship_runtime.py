"""Wires ``ship``: the parse loop of runtime.read_events -> encode -> batch -> sink workers.

Every sink is opened (secrets read, TLS files loaded) before the first line is
read, so a configuration mistake costs nothing. The run stops reading when a
sink fails permanently; what was queued is dead-lettered and the summary says
so. Deterministic ids (Elasticsearch) and Loki's deduplication make running
the same command again the way to resume; VictoriaLogs keeps every copy, so
there the disk queue's cursor (--queue-dir) is.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.normalize.privacy import PrivacyConfig, compile_privacy
from named_senderr.normalize.rollup import stages
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.queue.batcher import Batcher
from named_senderr.queue.driver import DeadLetter, Driver, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.queue.workers import SinkWorkers
from named_senderr.runtime import Warn, ingest_now, read_events
from named_senderr.ship_config import ShipConfig, SinkConfig
from named_senderr.sinks.elasticsearch import BulkSink
from named_senderr.sinks.loki import LokiSink
from named_senderr.sinks.outcome import Sink
from named_senderr.sinks.stdout import StdoutSink
from named_senderr.sinks.victorialogs import VictoriaLogsSink
from named_senderr.telemetry import QueueStats, Stats

REPORT_EVERY = 0.5  # seconds between progress reports
_CHECK_EVERY = 256  # events between looks at the clock for a report


@dataclass
class ShipResult:
    """Live during the run (the progress line reads it) and final at the end."""

    stats: Stats = field(default_factory=Stats)
    sinks: dict[str, SinkCounters] = field(default_factory=dict)
    dead_letter: Path | None = None
    dead_lettered: int = 0
    stopped: bool = False  # reading stopped early because a sink failed
    queue: QueueStats | None = None  # with a disk queue
    signalled: bool = False  # SIGTERM/SIGINT ended the run

    @property
    def failures(self) -> list[str]:
        return [counters.failed for counters in self.sinks.values() if counters.failed]


def open_sink(config: SinkConfig, ingest_time: str) -> Sink:
    if config.kind == "loki":
        return LokiSink(config, ingest_time)
    if config.kind == "victorialogs":
        return VictoriaLogsSink(config, ingest_time)
    if config.kind == "stdout":
        return StdoutSink(config, ingest_time, sys.stdout.buffer)
    return BulkSink(config, ingest_time)


def run_ship(
    config: ShipConfig,
    warn: Warn,
    report: Callable[[ShipResult], None] | None = None,
    sinks: list[Sink] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> ShipResult:
    """Ship every event of ``config.inputs`` to every sink; ``sinks`` replaces opening them (tests).

    With a queue directory the events go through the disk queue (queue/durable.py); ``stop``,
    set by a signal, ends reading there.
    """
    _check_dead_letter(config.dead_letter)
    privacy = compile_privacy(PrivacyConfig(config.client_ip, config.qname))  # key read now: errors before reading
    if config.queue.dir is not None:
        from named_senderr.queue.durable import run_durable

        return run_durable(config, warn, report, sinks, clock, sleep, stop or threading.Event())
    ingest_time = ingest_now()
    result = ShipResult(dead_letter=config.dead_letter)
    dead_letter = DeadLetter(config.dead_letter)
    policy = RetryPolicy.from_config(config.retry)
    with ExitStack() as stack:
        if sinks is None:
            sinks = []
            for sink_config in config.sinks:
                sinks.append(open_sink(sink_config, ingest_time))
                stack.callback(sinks[-1].close)
        lanes = []
        for sink in sinks:
            counters = result.sinks.setdefault(sink.name, SinkCounters())
            make = partial(Driver, sink, policy, dead_letter, counters, clock, sleep)
            lanes.append((sink, Batcher(config.batch, clock), SinkWorkers(sink, make, counters)))
        rejects = stack.enter_context(open(config.rejects, "wb")) if config.rejects else None
        parser = NamedLineParser(TimestampNormalizer(resolve_zone(config.timezone)))
        events = read_events(config.inputs, parser, config.host, result.stats, warn, None, rejects)
        events = stages(events, privacy, config.rollup)  # privacy, then rollup: before any sink encodes
        next_report = clock() + REPORT_EVERY
        try:
            for count, event in enumerate(events, 1):
                for sink, batcher, workers in lanes:
                    batch = batcher.add(*sink.encode(event))
                    if batch is not None and not workers.submit(batch):
                        result.stopped = True
                if result.stopped:
                    break
                if report is not None and count % _CHECK_EVERY == 0 and clock() >= next_report:
                    report(result)
                    next_report = clock() + REPORT_EVERY
        finally:
            events.close()
            for _, batcher, workers in lanes:
                batch = batcher.take()
                if batch is not None:
                    workers.submit(batch)
                workers.close()
            dead_letter.close()
    result.dead_lettered = dead_letter.count
    return result


def _check_dead_letter(path: Path) -> None:
    """Refuse at start a dead-letter path that could not be written when it is needed."""
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"dead_letter {path} is a directory; name a file, e.g. {path / 'dead-letter.ndjson'}")
    if not directory.is_dir():
        raise ConfigError(f"dead_letter {path}: directory {directory} does not exist; create it or choose another path")
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise ConfigError(f"dead_letter {path}: cannot write ({exc.strerror}); choose another path") from None
    if path.stat().st_size == 0:
        path.unlink()  # created only to test; made again when something is refused

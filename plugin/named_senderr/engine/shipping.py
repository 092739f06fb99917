"""The ``ship`` pipeline: files, stdin or followed globs -> transforms -> disk queue or not -> sinks.

Every option of the transform chain (privacy, rollup) and of the runner
(metrics, signals) works with and without ``--queue-dir``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from named_senderr.engine.contracts import Delivery, Line, Source
from named_senderr.engine.delivery import QueueLanes, SinkLanes
from named_senderr.engine.printing import Warn, ingest_now
from named_senderr.engine.runner import Runner
from named_senderr.engine.transforms import ParseLines, chain
from named_senderr.errors import ConfigError
from named_senderr.metrics import Sample, serve_metrics
from named_senderr.normalize.privacy import PrivacyConfig, compile_privacy
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser, Rejection
from named_senderr.queue.disk import DiskQueue
from named_senderr.queue.driver import DeadLetter, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.queue.writer import queue_samples
from named_senderr.ship_config import ShipConfig
from named_senderr.sinks.outcome import Sink
from named_senderr.sinks.registry import open_sink
from named_senderr.sources.file_tail import TailConfig
from named_senderr.sources.files import FileSource
from named_senderr.sources.follow import FollowSource
from named_senderr.telemetry import QueueStats, Stats

CHECKPOINT = "tail-checkpoint.json"  # in the queue dir: the checkpoint belongs with the events it vouches for


@dataclass
class ShipResult:
    """Live during the run (the progress line and /metrics read it) and final at the end."""

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


def run_ship(
    config: ShipConfig,
    warn: Warn,
    report: Callable[[ShipResult], None] | None = None,
    sinks: list[Sink] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> ShipResult:
    """Ship every event of ``config.inputs`` (files, stdin, or followed globs) to every sink."""
    result = new_result(config)
    source: Source
    if config.follow:
        assert config.queue.dir is not None
        tail = TailConfig(config.inputs, config.queue.dir / CHECKPOINT, read_from_head=config.read_from_head)
        source = FollowSource(tail, result.stats, warn)
    else:
        source = FileSource(config.inputs, result.stats, warn)
    return run_pipeline([source], config, result, warn, report, sinks, clock, sleep, stop)


def new_result(config: ShipConfig) -> ShipResult:
    """The result a pipeline fills; its ``stats`` are what the sources count into."""
    return ShipResult(dead_letter=config.dead_letter, queue=QueueStats() if config.queue.dir is not None else None)


def run_pipeline(
    sources: list[Source],
    config: ShipConfig,
    result: ShipResult,
    warn: Warn,
    report: Callable[[ShipResult], None] | None = None,
    sinks: list[Sink] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
    on_reject: Callable[[Rejection, Line], None] | None = None,
) -> ShipResult:
    """Run ``sources`` through the transforms of ``config`` into its sinks, with or without the disk queue.

    Every command that delivers to sinks is this function with its own sources; ``sinks`` replaces
    opening them (tests). ``stop``, set by a signal, ends reading, and the sinks get
    ``shutdown_timeout`` to catch up (with a queue; without one, what is in memory is delivered).
    ``on_reject`` is told of each rejected candidate (a source that passes them on itself).
    """
    check_dead_letter(config.dead_letter)
    privacy = compile_privacy(PrivacyConfig(config.client_ip, config.qname))  # key read now: errors before reading
    stop = stop or threading.Event()
    durable = config.queue.dir is not None
    dead_letter = DeadLetter(config.dead_letter)
    policy = RetryPolicy.from_config(config.retry)
    with ExitStack() as stack:
        if sinks is None:
            ingest_time = ingest_now()
            sinks = []
            for sink_config in config.sinks:
                sinks.append(open_sink(sink_config, ingest_time))
                stack.callback(sinks[-1].close)
        delivery: Delivery
        if durable:
            assert result.queue is not None
            lanes = QueueLanes(sinks, config.queue, policy, dead_letter, config.batch, result.sinks, result.queue,
                               warn, stop, patient=config.follow, clock=clock, sleep=sleep)  # fmt: skip
            delivery, queue = lanes, lanes.queue
        else:
            delivery, queue = SinkLanes(sinks, policy, dead_letter, config.batch, result.sinks, clock, sleep), None
        if config.metrics:
            server = stack.enter_context(serve_metrics(config.metrics, lambda: ship_samples(result, queue)))
            warn(f"metrics on {server.url}/metrics, health on {server.url}/healthz")
        rejects = stack.enter_context(open(config.rejects, "ab" if durable else "wb")) if config.rejects else None
        parser = NamedLineParser(TimestampNormalizer(resolve_zone(config.timezone)))
        runner = Runner(sources, ParseLines(parser, result.stats, config.host, rejects, on_reject),
                        chain(privacy, config.rollup, clock), delivery, stop,
                        report=(lambda: report(result)) if report else None)  # fmt: skip
        try:
            runner.run()
        finally:
            result.stopped = runner.stopped
            result.signalled = stop.is_set()
            if queue is not None and result.queue is not None:
                result.queue.torn_bytes, result.queue.damaged_bytes = queue.torn_bytes, queue.damaged_bytes
            dead_letter.close()
    result.dead_lettered = dead_letter.count
    return result


def check_dead_letter(path: Path) -> None:
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


def ship_samples(result: ShipResult, queue: DiskQueue | None) -> Iterator[Sample]:
    """What /metrics shows for ``ship``: reading, the queue (if any), and each sink by its ``sink`` label."""
    stats = result.stats
    yield Sample("named_senderr_lines_read_total", "counter", "Lines read from the inputs.", stats.lines)
    yield Sample("named_senderr_events_parsed_total", "counter", "Send-error events parsed.", stats.events)
    yield Sample("named_senderr_events_rejected_total", "counter", "Candidate lines rejected.", stats.rejected)
    if queue is not None:
        yield from queue_samples(result.queue or QueueStats(), queue)
    per_sink = (
        ("sent", "Events stored by the sink.", lambda c: c.sent),
        ("duplicate", "Events the sink already had (stored once).", lambda c: c.duplicates),
        ("retried", "Event sends retried.", lambda c: c.retried),
        ("dead_lettered", "Events refused for good, in the dead-letter file.", lambda c: c.dead_lettered),
    )
    for what, text, get in per_sink:
        for name, counters in result.sinks.items():
            yield Sample(f"named_senderr_events_{what}_total", "counter", text, get(counters), {"sink": name})
    for name, counters in result.sinks.items():
        yield Sample("named_senderr_sink_up", "gauge", "0 once the sink failed for good.", 0 if counters.failed else 1,
                     {"sink": name})  # fmt: skip

"""The ``ship`` pipeline: files, stdin or followed globs -> transforms -> disk queue or not -> sinks.

Every option of the transform chain (privacy, rollup) and of the runner
(metrics, signals) works with and without ``--queue-dir``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from named_senderr.engine.contracts import Delivery, Source, Stage
from named_senderr.engine.delivery import QueueLanes, SinkLanes
from named_senderr.engine.printing import Warn, line_encoder, renderer
from named_senderr.engine.runner import Runner, SourceCounters
from named_senderr.engine.topology import Topology
from named_senderr.engine.transforms import ParseLines, command_line_stages
from named_senderr.errors import ConfigError
from named_senderr.event import ingest_now
from named_senderr.lines import Line
from named_senderr.metrics import Measured, Sample
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser, Rejection
from named_senderr.queue.disk import DiskQueue
from named_senderr.queue.driver import DeadLetter, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.queue.writer import queue_samples
from named_senderr.settings.ship import ShipConfig
from named_senderr.sinks.outcome import Searchable, Sink
from named_senderr.sinks.registry import open_sink
from named_senderr.sinks.stream import StreamDelivery
from named_senderr.sources.file_tail import TailConfig
from named_senderr.sources.files import FileSource
from named_senderr.sources.follow import FollowSource
from named_senderr.telemetry import QueueStats, Stats

if TYPE_CHECKING:
    from prometheus_client import Histogram

CHECKPOINT = "tail-checkpoint.json"  # in the queue dir: the checkpoint belongs with the events it vouches for


@dataclass
class ShipResult:
    """Live during the run (the progress line and /metrics read it) and final at the end."""

    stats: Stats = field(default_factory=Stats)
    sinks: dict[str, SinkCounters] = field(default_factory=dict)
    sources: dict[str, SourceCounters] = field(default_factory=dict)
    batch_seconds: Histogram | None = None  # per sink, with --metrics (prometheus_client is imported only then)
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
    return run_pipeline([source], config, result, warn, report, sinks, clock, sleep, stop, endless=config.follow)


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
    *,
    topology: Topology | None = None,
    stream: BinaryIO | None = None,
    endless: bool = False,
    samples: Callable[[], Iterable[Sample]] | None = None,
    on_reject: Callable[[Rejection, Line], None] | None = None,
) -> ShipResult:
    """Run ``sources`` through the transforms of ``config`` into its sinks, with or without the disk queue.

    Every command that delivers to sinks is this function with its own sources; ``sinks`` replaces
    opening them (tests). ``stop``, set by a signal, ends reading, and the sinks get
    ``shutdown_timeout`` to catch up (with a queue the rest stays queued; without one it is counted as
    undelivered, and its sources are not acknowledged).
    ``topology`` replaces the config's privacy-then-rollup with a graph of stages that routes each event
    to the sinks that read it (``run --config``).
    With ``stream``, a lone ``stdout:`` sink without a queue prints onto it in the caller's thread, each
    batch flushed before its ack moves (``prints_directly``). ``endless`` sources (followed files, a
    listener) only stop on a signal: a sink behind the queue is retried for as long, and rejects are
    written as they come and appended across restarts. ``samples`` adds the sources' own figures to /metrics.
    ``on_reject`` is told of each rejected candidate (a source that passes them on itself).
    """
    direct = stream is not None and sinks is None and prints_directly(config)
    if not direct:  # printing refuses nothing: no dead letters
        check_dead_letter(config.dead_letter)
    chain: Topology | list[Stage] = (
        topology if topology is not None else command_line_stages(config.client_ip, config.qname, config.rollup, clock)
    )  # the keys are read now
    stop = stop or threading.Event()
    durable = config.queue.dir is not None
    dead_letter = DeadLetter(config.dead_letter)
    policy = RetryPolicy.from_config(config.retry)
    if config.metrics and result.batch_seconds is None:  # prometheus_client is imported only for --metrics
        from named_senderr.metrics_endpoint import batch_histogram

        result.batch_seconds = batch_histogram()
    with ExitStack() as stack:
        delivery: Delivery
        queue: DiskQueue | None = None
        if direct:
            assert stream is not None
            form = config.sinks[0].format
            delivery = StreamDelivery(stream, renderer(form), line=line_encoder(form))
        else:
            sinks = sinks if sinks is not None else open_sinks(config, stack)
            for sink in sinks:  # before the lanes count into them: with --metrics each batch settled is timed
                if result.batch_seconds is None:
                    result.sinks.setdefault(sink.name, SinkCounters())
                else:
                    observe = result.batch_seconds.labels(sink=sink.name).observe
                    result.sinks.setdefault(sink.name, SinkCounters(settled=observe))
            if durable:
                assert result.queue is not None
                lanes = QueueLanes(sinks, config.queue, policy, dead_letter, config.batch, result.sinks, result.queue,
                                   warn, stop, patient=endless, clock=clock, sleep=sleep)  # fmt: skip
                delivery, queue = lanes, lanes.queue
            else:
                delivery = SinkLanes(sinks, policy, dead_letter, config.batch, result.sinks, clock, sleep, stop=stop,
                                     shutdown_timeout=config.queue.shutdown_timeout, warn=warn)  # fmt: skip
        if config.metrics:
            from named_senderr.metrics_endpoint import serve_metrics

            def collect() -> Iterator[Sample]:  # read at each scrape
                yield from ship_samples(result, queue, sources)
                yield from samples() if samples is not None else ()

            assert result.batch_seconds is not None  # made above for --metrics
            server = stack.enter_context(serve_metrics(config.metrics, collect, result.batch_seconds))
            warn(f"metrics on {server.url}/metrics, health on {server.url}/healthz")
        mode = "ab" if durable or endless else "wb"  # a restart keeps what the last run rejected
        buffering = 0 if endless else -1  # an endless run ends killed: each reject is written as it comes
        rejects = stack.enter_context(open(config.rejects, mode, buffering)) if config.rejects else None
        parser = NamedLineParser(TimestampNormalizer(resolve_zone(config.timezone)))
        runner = Runner(sources, ParseLines(parser, result.stats, config.host, rejects, on_reject),
                        chain, delivery, stop,
                        report=(lambda: report(result)) if report else None, counters=result.sources)  # fmt: skip
        try:
            runner.run()
        finally:
            result.stopped = runner.stopped
            result.signalled = stop.is_set()
            if queue is not None and result.queue is not None:
                result.queue.torn_bytes, result.queue.damaged_bytes = queue.torn_bytes, queue.damaged_bytes
            dead_letter.close()
        if not endless and sinks is not None:
            make_searchable(sinks, result.sinks, warn)
    result.dead_lettered = dead_letter.count
    return result


def open_sinks(config: ShipConfig, stack: ExitStack) -> list[Sink]:
    """Every sink of ``config``, each closed when ``stack`` closes."""
    ingest_time = ingest_now()
    sinks = []
    for sink_config in config.sinks:
        sinks.append(open_sink(sink_config, ingest_time))
        stack.callback(sinks[-1].close)
    return sinks


def make_searchable(sinks: list[Sink], counters: dict[str, SinkCounters], warn: Warn) -> None:
    """At the end of a one-shot run, refresh what each search store took: a query right after it sees it all.

    Long runs leave it to the index's ``refresh_interval``: a refresh per batch would cost the cluster.
    """
    for sink in sinks:
        took = counters.get(sink.name)
        if not isinstance(sink, Searchable) or took is None or not took.sent or took.failed:
            continue
        if warning := sink.make_searchable():
            warn(warning)


def prints_directly(config: ShipConfig) -> bool:
    """Only ``stdout:`` and no disk queue: the events can be printed straight, no sink thread in between."""
    return config.queue.dir is None and [sink.kind for sink in config.sinks] == ["stdout"]


def check_dead_letter(path: Path) -> None:
    """Refuse at start a dead-letter path that could not be written when it is needed."""
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"dead_letter {path} is a directory; name a file, e.g. {path / 'dead-letter.ndjson'}")
    if not directory.is_dir():
        raise ConfigError(f"dead_letter {path}: directory {directory} does not exist; create it or choose another path")
    # An existing file is opened as it will be; a missing one is not made (it is, when something is refused):
    # a nameless file in its directory tests that. Nothing here removes a file another process may be writing.
    try:
        with open(path, "ab") if path.exists() else tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ConfigError(f"dead_letter {path}: cannot write ({exc.strerror}); choose another path") from None


def ship_samples(result: ShipResult, queue: DiskQueue | None, sources: list[Source]) -> Iterator[Sample]:
    """What /metrics shows for a pipeline: reading, each source, the queue (if any), and each sink."""
    stats = result.stats
    yield Sample("named_senderr_lines_read_total", "counter", "Lines read from the inputs.", stats.lines)
    yield Sample("named_senderr_events_parsed_total", "counter", "Send-error events parsed.", stats.events)
    yield Sample("named_senderr_events_rejected_total", "counter", "Candidate lines rejected.", stats.rejected)
    yield from source_samples(result.sources)
    for source in sources:
        if isinstance(source, Measured):
            yield from source.samples()
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


def source_samples(counters: dict[str, SourceCounters]) -> Iterator[Sample]:
    """What the pipeline took from each source and refused, by its ``source`` label."""
    per_source = (
        ("batches", "Batches with lines the pipeline took from the source.", lambda c: c.batches),
        ("lines", "Candidate lines the pipeline took from the source.", lambda c: c.lines),
        ("refused", "Batches the pipeline refused (full, stopping): kept by the source, unacknowledged.",
         lambda c: c.refused),
    )  # fmt: skip
    for what, text, get in per_source:
        for name, source in counters.items():
            yield Sample(f"named_senderr_source_{what}_total", "counter", text, get(source), {"source": name})

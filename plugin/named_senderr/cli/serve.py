"""``named-senderr serve``: receive Fluentd / Fluent Bit Forward frames, hand the events to an output.

Outputs: NDJSON on stdout (default), a Fluent peer (``--to-forward``) or the
``ship`` sinks (``--to URL``). Logs go to stderr; stdout carries events only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from named_senderr.cli.peer_options import add_peer_options, peer_limits
from named_senderr.config import FORMATS
from named_senderr.engine.printing import ingest_now
from named_senderr.errors import ConfigError
from named_senderr.event import Event
from named_senderr.metrics import Sample, serve_metrics
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.protocol.fluent_forward import Limits
from named_senderr.queue.batcher import Batcher
from named_senderr.queue.consumer import SinkConsumer, encode_event
from named_senderr.queue.disk import HEADER, DiskQueue, QueueWriteError
from named_senderr.queue.driver import DeadLetter, Driver, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.queue.workers import SinkWorkers
from named_senderr.queue.writer import queue_samples
from named_senderr.ship_config import ShipConfig
from named_senderr.ship_load import URL_FORMS, load_ship_config
from named_senderr.sinks.forward import DEFAULT_TAG, ForwardOutput, ForwardOutputConfig
from named_senderr.sinks.outcome import Sink
from named_senderr.sinks.registry import open_sink
from named_senderr.sources.exec_filter import RecordParser, renderer
from named_senderr.sources.forward_server import (
    DEFAULT_KEYS,
    ForwardServer,
    ForwardServerConfig,
    Output,
    OutputFull,
    ServerStats,
)
from named_senderr.sources.peers import GAUGES, PeerLimits
from named_senderr.telemetry import QueueStats

SHARED_KEY_ENV = "NAMED_SENDERR_SHARED_KEY"
KIB = 1024
MIB = 1024 * KIB
WRITE_EVENTS = 1024  # events rendered per write to stdout

EPILOG = f"""\
input:
  Forward protocol v1 frames (Message, Forward, PackedForward, gzip), as sent by
  Fluentd's out_forward, Fluent Bit's forward output and fluent-logger. Frames
  asking for an ack ("chunk") are acknowledged once their events were handed
  to the output. The log line is read from the first --key present.

output:
  stdout          one JSON event per line (default; --format ecs by default)
  --to URL        the sinks of `named-senderr ship` (Elasticsearch, OpenSearch,
                  Loki, stdout:), batched and retried as ship does
  --queue-dir     with --to: a chunk is acknowledged once fsync'd in DIR; a full
                  queue or a disk that refuses the write refuses the chunk whole
                  (no ack: the sender resends it), and serve takes chunks again
                  by itself once there is room
  --to-forward    a Fluentd / Fluent Bit in_forward (--format flat by default);
                  while it is down up to --max-pending events wait, then frames
                  are not acknowledged, so the senders keep and resend them
  stderr          the log: listening address, refused connections, a summary

shared key (Fluentd <security>, Fluent Bit Shared_Key): --shared-key-file PATH,
or the environment variable {SHARED_KEY_ENV}, or --shared-key KEY (visible in ps).

examples:
  named-senderr serve                                    127.0.0.1:24224 -> stdout
  named-senderr serve --forward 0.0.0.0:24224 --shared-key-file /etc/named-senderr/key
  named-senderr serve --to-forward 127.0.0.1:24225 --tag named.send_error
"""


class ShipOutput:
    """``--to URL``: the ``ship`` sinks (Elasticsearch, OpenSearch, Loki, stdout:) behind the Output interface.

    Events are encoded and batched here and sent by each sink's worker threads
    with ship's retry and dead-letter policy. The hand-off returns once a
    batch is queued (in memory; the queue is bounded, so a slow sink holds the
    acks back); a sink that failed for good refuses further events.
    """

    def __init__(self, config: ShipConfig, log: logging.Logger) -> None:
        self.log = log
        self.dead_letter = DeadLetter(config.dead_letter)
        policy = RetryPolicy.from_config(config.retry)
        ingest_time = ingest_now()
        self.lanes: list[tuple[Sink, Batcher, SinkWorkers, SinkCounters]] = []
        for sink_config in config.sinks:
            sink = open_sink(sink_config, ingest_time)
            counters = SinkCounters()

            def driver(sink: Sink = sink, counters: SinkCounters = counters) -> Driver:
                return Driver(sink, policy, self.dead_letter, counters)

            self.lanes.append(
                (sink, Batcher(config.batch, time.monotonic), SinkWorkers(sink, driver, counters), counters)
            )

    def __call__(self, events: list[Event]) -> None:
        for sink, batcher, workers, counters in self.lanes:
            if counters.failed:
                raise OutputFull(f"sink {sink.name} has stopped: {counters.failed}")
            for event in events:
                batch = batcher.add(*sink.encode(event))
                if batch is not None and not workers.submit(batch):
                    raise OutputFull(f"sink {sink.name} has stopped: {counters.failed}")

    def flush(self) -> None:
        """Send the batches whose first event waited long enough (ship's batch.max_wait)."""
        for _, batcher, workers, _ in self.lanes:
            if batcher.expired():
                workers.submit(batcher.take() or [])

    def close(self) -> None:
        for sink, batcher, workers, counters in self.lanes:
            batch = batcher.take()
            if batch is not None:
                workers.submit(batch)
            workers.close()
            self.log.info(
                "%s sent %d, already stored %d, retried %d, dead-lettered %d%s",
                sink.name, counters.sent, counters.duplicates, counters.retried, counters.dead_lettered,
                f", failed: {counters.failed}" if counters.failed else "",
            )  # fmt: skip
        self.dead_letter.close()


class DurableShipOutput:
    """``--to URL --queue-dir DIR``: a chunk is acknowledged only once its events are fsync'd in the disk queue.

    Each sink's consumer delivers from the queue and moves its cursor after the
    store took a batch, so what serve acknowledged survives a crash of serve or
    an outage of the store. A full queue, or a disk that refuses the write,
    refuses the chunk whole: nothing of it is kept or held in memory, no ack, the
    sender resends it; the next chunk the disk takes is acknowledged as usual.
    """

    def __init__(self, config: ShipConfig, log: logging.Logger) -> None:
        assert config.queue.dir is not None
        self.log = log
        self.timeout = config.queue.shutdown_timeout
        self.dead_letter = DeadLetter(config.dead_letter)
        sinks = [open_sink(sink_config, ingest_now()) for sink_config in config.sinks]
        readers = tuple(sink.name for sink in sinks)
        self.queue = DiskQueue(config.queue.dir, config.queue.max_bytes, readers, warn=log.warning)
        self.stats = QueueStats()
        self.closing, self.halt = threading.Event(), threading.Event()
        policy = RetryPolicy.from_config(config.retry)
        self.consumers: list[SinkConsumer] = []
        for sink in sinks:
            counters = SinkCounters()
            driver = Driver(sink, policy, self.dead_letter, counters, keep=True, halted=self.halt.is_set)
            consumer = SinkConsumer(sink, self.queue, driver, counters, config.batch, self.closing.is_set, self.halt,
                                    log.warning, patient=True, pause=config.retry.max_backoff)  # fmt: skip
            self.consumers.append(consumer.start())

    def __call__(self, events: list[Event]) -> None:
        if self.queue.refusing():  # no encoding for a write the disk would refuse: memory stays flat
            raise OutputFull(self.queue.refusal())
        payloads = [encode_event(event) for event in events]
        if not self.queue.has_room(sum(HEADER.size + len(p) for p in payloads)):
            raise OutputFull(f"queue {self.queue.dir} is full ({self.queue.max_bytes:,} bytes)")
        try:
            self.queue.append(payloads)  # one write, one fsync: the whole chunk is kept, or none of it
        except QueueWriteError as exc:
            raise OutputFull(str(exc)) from None
        self.stats.queued += len(payloads)

    def flush(self) -> None:
        """Nothing to do: the consumers read the queue on their own."""

    def samples(self) -> Iterator[Sample]:
        return queue_samples(self.stats, self.queue)

    def close(self) -> None:
        """Give the sinks ``shutdown_timeout`` to catch up; what is left stays queued for the next start."""
        self.closing.set()
        deadline = time.monotonic() + self.timeout
        for consumer in self.consumers:
            consumer.thread.join(max(0.0, deadline - time.monotonic()))
        self.halt.set()
        for consumer in self.consumers:
            consumer.thread.join()
            counters = consumer.counters
            self.log.info(
                "%s sent %d, already stored %d, retried %d, dead-lettered %d%s",
                consumer.sink.name, counters.sent, counters.duplicates, counters.retried, counters.dead_lettered,
                ", the rest stays queued" if self.queue.pending(consumer.sink.name) else "",
            )  # fmt: skip
            consumer.sink.close()
        self.queue.close()
        self.dead_letter.close()


class NdjsonOutput:
    """The default Output: one JSON line per event on a byte stream, flushed per hand-off."""

    def __init__(self, stream: BinaryIO, format: str) -> None:
        self.stream = stream
        self.render = renderer(format)

    def __call__(self, events: list[Event]) -> None:
        for start in range(0, len(events), WRITE_EVENTS):  # a frame's worth of JSON at once would double its memory
            batch = events[start : start + WRITE_EVENTS]
            self.stream.write(b"".join(orjson.dumps(self.render(e), option=orjson.OPT_APPEND_NEWLINE) for e in batch))
        self.stream.flush()

    def flush(self) -> None:
        """Nothing waits: every hand-off is written at once."""

    def close(self) -> None:
        self.stream.flush()


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="receive Forward frames (Fluentd, Fluent Bit) and emit events",
        description="Listen for Fluentd Forward protocol frames and turn their log lines into send-error events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--forward", default="127.0.0.1:24224", metavar="HOST:PORT", help="where to listen (default: 127.0.0.1:24224)"
    )
    parser.add_argument(
        "--key",
        action="append",
        metavar="KEY",
        help="record field of the log line; repeatable (default: log, then message)",
    )
    parser.add_argument("--format", choices=FORMATS, help="event shape (default: ecs on stdout, flat to a Fluent peer)")
    parser.add_argument("--to-forward", metavar="HOST:PORT", help="send events to this Fluentd / Fluent Bit in_forward")
    parser.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="URL",
        help=f"a ship sink instead of stdout (repeatable): {URL_FORMS}",
    )
    parser.add_argument("--dead-letter", type=Path, metavar="FILE", help="with --to: where refused events go (NDJSON)")
    parser.add_argument(
        "--queue-dir", type=Path, metavar="DIR", help="with --to: acknowledge only once events are on disk here"
    )
    parser.add_argument(
        "--tag", default=DEFAULT_TAG, help=f"tag of the events sent with --to-forward (default: {DEFAULT_TAG})"
    )
    parser.add_argument(
        "--max-pending", type=int, default=10_000, metavar="N", help="events kept while the peer is down"
    )
    parser.add_argument(
        "--shared-key", metavar="KEY", help=f"enable the handshake (prefer --shared-key-file or ${SHARED_KEY_ENV})"
    )
    parser.add_argument("--shared-key-file", type=Path, metavar="PATH", help="read the shared key from this file")
    parser.add_argument("--hostname", help="our name in the handshake (default: this machine's host name)")
    parser.add_argument("--timezone", metavar="TZ", help="zone of times logged without one (default: local)")
    parser.add_argument("--host", metavar="NAME", help="host for lines and records that carry none")
    add_frame_options(parser)
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.add_argument("--metrics", metavar="[HOST:]PORT", help="serve /metrics and /healthz (loopback by default)")
    parser.set_defaults(run=run)


def add_frame_options(parser: argparse.ArgumentParser) -> None:
    """What one peer may make serve hold and decode: past a limit the frame is refused, the connection closed."""
    group = add_peer_options(parser, PeerLimits().max_connections)
    limits = Limits()
    group.add_argument("--max-frame-size", type=int, default=limits.max_frame_bytes // MIB, metavar="MIB",
                       help="largest frame accepted (default: %(default)s)")  # fmt: skip
    group.add_argument("--max-decompressed-size", type=int, default=limits.max_decompressed_bytes // MIB,
                       metavar="MIB", help="largest gunzipped frame (default: %(default)s)")  # fmt: skip
    group.add_argument("--max-entries", type=int, default=limits.max_entries, metavar="N",
                       help="entries in one frame (default: %(default)s)")  # fmt: skip
    group.add_argument("--max-entry-size", type=int, default=limits.max_entry_bytes // KIB, metavar="KIB",
                       help="largest entry of a frame (default: %(default)s)")  # fmt: skip


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{option} {text!r} is not HOST:PORT; e.g. 127.0.0.1:24224 or [::1]:24224")
    return host.strip("[]"), int(port)


def read_shared_key(args: argparse.Namespace) -> str | None:
    given = [
        name
        for name, value in (("--shared-key", args.shared_key), ("--shared-key-file", args.shared_key_file))
        if value
    ]
    if len(given) > 1:
        raise ConfigError("--shared-key and --shared-key-file are both given; keep one")
    if args.shared_key_file:
        try:
            key = args.shared_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--shared-key-file {args.shared_key_file}: cannot read it ({exc.strerror})") from exc
        if not key:
            raise ConfigError(f"--shared-key-file {args.shared_key_file} is empty; write the key into it")
        return key
    return args.shared_key or os.environ.get(SHARED_KEY_ENV) or None


def build(args: argparse.Namespace, log: logging.Logger) -> tuple[ForwardServerConfig, RecordParser, Output]:
    host, port = parse_address(args.forward, "--forward")
    config = ForwardServerConfig(
        host=host,
        port=port,
        keys=tuple(args.key or DEFAULT_KEYS),
        shared_key=read_shared_key(args),
        limits=Limits(
            max_frame_bytes=args.max_frame_size * MIB,
            max_decompressed_bytes=args.max_decompressed_size * MIB,
            max_entries=args.max_entries,
            max_entry_bytes=args.max_entry_size * KIB,
        ),
        peers=peer_limits(args),
        **({"self_hostname": args.hostname} if args.hostname else {}),
    )
    records = RecordParser(NamedLineParser(TimestampNormalizer(resolve_zone(args.timezone))), config.keys, args.host)
    output: Output
    if args.to and args.to_forward:
        raise ConfigError("--to and --to-forward are both given; choose one output")
    if args.to:
        overrides = {"dead_letter": args.dead_letter, "timezone": args.timezone, "host": args.host,
                     "queue.dir": args.queue_dir}  # fmt: skip
        ship_config = load_ship_config(None, args.to, overrides)
        output = DurableShipOutput(ship_config, log) if args.queue_dir else ShipOutput(ship_config, log)
    elif args.to_forward:
        peer_host, peer_port = parse_address(args.to_forward, "--to-forward")
        peer = ForwardOutputConfig(peer_host, peer_port, tag=args.tag, max_pending=args.max_pending)
        output = ForwardOutput(peer, renderer(args.format or "flat"), log)
    else:
        output = NdjsonOutput(sys.stdout.buffer, args.format or "ecs")
    return config, records, output


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, format="named-senderr serve: %(levelname)s %(message)s")
    log = logging.getLogger("named_senderr.serve")
    log.setLevel(args.log_level.upper())
    config, records, output = build(args, log)
    server = ForwardServer(config, records, output, log)
    if args.metrics is None:
        asyncio.run(_serve(server))
        return 0

    def samples() -> Iterator[Sample]:
        yield from server_samples(server.stats)
        if isinstance(output, DurableShipOutput):
            yield from output.samples()

    with serve_metrics(args.metrics, samples) as endpoint:
        log.info("metrics on %s/metrics", endpoint.url)
        asyncio.run(_serve(server))
    return 0


def server_samples(stats: ServerStats) -> list[Sample]:
    """Every receiver counter as a Prometheus counter named after it; open connections and buffered bytes as gauges."""
    return [
        Sample(f"named_senderr_forward_{name}", "gauge", f"Forward receiver: {name.replace('_', ' ')} now", value)
        if name in GAUGES
        else Sample(
            f"named_senderr_forward_{name}_total", "counter", f"Forward receiver: {name.replace('_', ' ')}", value
        )
        for name, value in vars(stats).items()
    ]


async def _serve(server: ForwardServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(
            f"--forward {server.config.host}:{server.config.port}: cannot listen ({exc.strerror})"
        ) from exc
    await stop.wait()
    await server.stop()

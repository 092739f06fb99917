"""The ``fluentd-filter`` pipeline: Fluentd's records on stdin -> parse -> privacy -> rollup -> msgpack on stdout.

The same transform chain as every other command: a rejected candidate is
counted (and kept with ``rejects``) by the parse stage, never written back as
an event; the source passes it back only under ``rejected_tag``. With a
shipping configuration (``--to``) the events go to its sinks instead, with or
without the disk queue, as ``ship`` sends them; stdout then carries only the
records passed back.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from named_senderr.engine.runner import Runner
from named_senderr.engine.transforms import ParseLines, command_line_stages
from named_senderr.errors import ConfigError
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser
from named_senderr.sinks.msgpack_stream import MsgpackOut
from named_senderr.sinks.stream import StreamDelivery
from named_senderr.sources.exec_filter import IN_FORMATS, NON_MATCHING, ExecFilterSource, FilterStats, renderer
from named_senderr.telemetry import Stats

if TYPE_CHECKING:  # the shipping configuration and clients are imported only with --to
    from named_senderr.engine.shipping import ShipResult
    from named_senderr.settings.ship import ShipConfig

DEFAULT_KEYS = ("message", "log")


@dataclass(frozen=True)
class FilterConfig:
    """Everything ``fluentd-filter`` needs, checked before the first record is read."""

    keys: tuple[str, ...] = DEFAULT_KEYS
    in_format: str = "msgpack"
    format: str = "flat"
    non_matching: str = "drop"
    rejected_tag: str | None = None  # pass rejected candidates back under this tag; None: never
    timezone: str | None = None
    host: str | None = None
    rejects: Path | None = None
    max_record_bytes: int = 1024 * 1024
    stats_interval: float = 300.0
    client_ip: str | None = None
    qname: str | None = None
    rollup: float | None = None
    ship: ShipConfig | None = None  # --to: the events go to these sinks (its own privacy, rollup, rejects)

    def __post_init__(self) -> None:
        if self.max_record_bytes < 1024:
            raise ConfigError(f"--max-record-size {self.max_record_bytes} is too small; give at least 1024 bytes")
        if not self.keys or not all(self.keys):
            raise ConfigError("--key needs a field name, e.g. --key message")
        if self.in_format not in IN_FORMATS or self.non_matching not in NON_MATCHING:
            raise ConfigError(f"--in-format is one of {', '.join(IN_FORMATS)}, --non-matching one of "
                              f"{', '.join(NON_MATCHING)}")  # fmt: skip
        if self.rejected_tag is not None and not self.rejected_tag.strip():
            raise ConfigError("--rejected-tag needs a Fluentd tag, e.g. --rejected-tag named.rejected")
        if self.stats_interval <= 0:
            raise ConfigError(f"--stats-interval {self.stats_interval} must be above 0 seconds")
        if self.ship is not None and any(sink.kind == "stdout" for sink in self.ship.sinks):
            raise ConfigError("--to stdout: stdout is where fluentd-filter answers Fluentd; leave out --to for that")


@dataclass
class FilterResult:
    """Live during the run (the periodic log line reads it) and final at the end."""

    parsed: Stats
    counts: FilterStats
    out: MsgpackOut
    ended: str = "signal"  # eof, signal, or Fluentd closed our stdout
    shipped: ShipResult | None = None  # with --to

    def summary(self) -> str:
        text = self.counts.summary(self.parsed, None if self.shipped else self.out.events)
        for name, c in (self.shipped.sinks if self.shipped else {}).items():
            text += (f"; {name}: sent {c.sent + c.duplicates} ({c.duplicates} already stored), retried {c.retried}, "
                     f"dead-lettered {c.dead_lettered}")  # fmt: skip
        return text

    @property
    def failures(self) -> list[str]:
        return self.shipped.failures if self.shipped else []


def run_fluentd_filter(
    config: FilterConfig, in_fd: int, out_fd: int, log: logging.Logger, stop: threading.Event
) -> FilterResult:
    """Filter the records on ``in_fd`` onto ``out_fd`` (or the sinks) until end of input or ``stop`` (a signal)."""
    if config.ship is not None:
        return _to_sinks(config, config.ship, in_fd, MsgpackOut(out_fd), log, stop)
    chain = command_line_stages(config.client_ip, config.qname, config.rollup, time.monotonic)  # keys read now
    parser = NamedLineParser(TimestampNormalizer(resolve_zone(config.timezone)))
    out = MsgpackOut(out_fd)
    stats = Stats()
    source = ExecFilterSource(in_fd, config.in_format, config.max_record_bytes, config.keys, out, stats, log,
                              config.non_matching == "pass", config.rejected_tag)  # fmt: skip
    result = FilterResult(stats, source.counts, out)
    delivery = StreamDelivery(None, renderer(config.format), writer=out)  # flushed after every batch
    with ExitStack() as stack:
        rejects = stack.enter_context(open_rejects(config.rejects)) if config.rejects else None
        parse = ParseLines(parser, stats, config.host, rejects, on_reject=source.rejected)
        runner = Runner([source], parse, chain, delivery, stop,
                        report=lambda: log.info("%s", result.summary()), report_every=config.stats_interval)  # fmt: skip
        runner.run()
    result.ended = "Fluentd closed our stdout" if out.broken else source.ended
    return result


def _to_sinks(
    config: FilterConfig, ship: ShipConfig, in_fd: int, out: MsgpackOut, log: logging.Logger, stop: threading.Event
) -> FilterResult:
    from named_senderr.engine.shipping import new_result, run_pipeline  # the HTTP clients only when shipping

    shipped = new_result(ship)
    source = ExecFilterSource(in_fd, config.in_format, config.max_record_bytes, config.keys, out, shipped.stats, log,
                              config.non_matching == "pass", config.rejected_tag)  # fmt: skip
    result = FilterResult(shipped.stats, source.counts, out, shipped=shipped)
    due = [time.monotonic() + config.stats_interval]

    def report(_: ShipResult) -> None:
        if time.monotonic() >= due[0]:
            log.info("%s", result.summary())
            due[0] = time.monotonic() + config.stats_interval

    run_pipeline([source], ship, shipped, log.warning, report, stop=stop, on_reject=source.rejected)
    result.ended = "Fluentd closed our stdout" if out.broken else source.ended
    return result


def open_rejects(path: Path) -> BinaryIO:
    """Appended to: Fluentd respawns its child with the same command line."""
    try:
        return open(path, "ab")
    except OSError as exc:
        raise ConfigError(f"--rejects {path}: cannot open it ({exc.strerror}); give a writable path") from None

"""``tail`` and ``listen``: one endless source -> the transform chain -> stdout, or any sinks, queue or not.

With no sink named they print on stdout, straight from the caller's thread:
each batch is written and flushed before its acknowledgement moves. ``tail``
then hands a poll on in parts of at most PRINT_EVERY lines, so a kill -9
between a write and its checkpoint prints at most that many events again (a
write to a pipe and the rename of a checkpoint cannot be one atomic step).
With ``--to`` or ``--queue-dir`` the events go the way ``ship``'s go: the
checkpoint moves once the sinks settled them, or once the queue's append was
fsync'd. They run until a signal, or until a sink fails for good.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from named_senderr.engine.printing import Warn
from named_senderr.engine.shipping import ShipResult, new_result, prints_directly, run_pipeline
from named_senderr.metrics import Sample
from named_senderr.settings.ship import ShipConfig
from named_senderr.sources.file_tail import TailConfig
from named_senderr.sources.follow import FollowSource
from named_senderr.sources.syslog import SyslogConfig, SyslogStats
from named_senderr.sources.syslog_source import SyslogSource

PRINT_EVERY = 256  # lines a printed batch holds at most: below NdjsonWriter's own batch, so one write each


def run_tail(config: ShipConfig, tail: TailConfig, warn: Warn, stop: threading.Event, stream: BinaryIO) -> ShipResult:
    """Follow ``tail.globs`` until ``stop``; its checkpoint moves once the events are durably held."""
    result = new_result(config)
    parts = PRINT_EVERY if prints_directly(config) else None  # sinks and the queue take whole polls
    source = FollowSource(tail, result.stats, warn, batch_lines=parts)
    return run_pipeline([source], config, result, warn, stop=stop, stream=stream, endless=True)


def run_listen(
    config: ShipConfig,
    syslog: SyslogConfig,
    warn: Warn,
    stop: threading.Event,
    stream: BinaryIO,
    on_ready: Callable[[list[str]], None],
) -> tuple[ShipResult, SyslogStats]:
    """Receive syslog on ``syslog.endpoints`` until ``stop``; ``on_ready`` gets the bound URLs."""
    result = new_result(config)
    source = SyslogSource(syslog, result.stats, warn, on_ready)
    run_pipeline([source], config, result, warn, stop=stop, stream=stream, endless=True,
                 samples=lambda: syslog_samples(source.syslog))  # fmt: skip
    return result, source.syslog


def syslog_samples(stats: SyslogStats) -> Iterator[Sample]:
    """The receiver's part of /metrics: every message it did not hand on is in one of these counters."""
    counters = (
        ("messages", "Syslog messages received whole.", stats.messages),
        ("dropped", "Messages the pipeline refused (UDP while full, any while stopping).", stats.dropped),
        ("oversize", "Messages over --max-message-bytes, dropped.", stats.oversize),
        ("malformed", "TCP connections closed on a framing error.", stats.malformed),
        ("kernel_drops", "UDP datagrams the kernel dropped, its receive buffer full.", stats.kernel_drops),
        ("refused_connections", "TCP connections refused at --max-connections.", stats.refused_connections),
    )
    for what, text, value in counters:
        yield Sample(f"named_senderr_syslog_{what}_total", "counter", text, value)
    yield Sample("named_senderr_syslog_open_connections", "gauge", "TCP connections open now.", stats.open_connections)

"""The syslog receiver (sources/syslog.py) as an engine source.

Each message becomes one line, its sender's address the line's host (the
message's own HOSTNAME, when it has one, still wins in parsing). A TCP
connection's batch waits while the pipeline is full, so its sender slows
down. A UDP batch never waits, since the other senders must still be served:
refused whole, its messages are counted as dropped and said, since a datagram
cannot be asked for again. Syslog has no acknowledgements to move.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from named_senderr.lines import Batch, Emit, Line
from named_senderr.sources.syslog import SyslogConfig, SyslogStats, Warn, serve
from named_senderr.telemetry import Stats


@dataclass
class SyslogSource:
    config: SyslogConfig
    stats: Stats
    warn: Warn
    on_ready: Callable[[list[str]], None] = lambda _urls: None
    syslog: SyslogStats = field(default_factory=SyslogStats)
    name: str = "syslog"

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self.stats.inputs = len(self.config.endpoints)

        def deliver(messages: list[bytes], senders: list[str], wait: bool) -> None:
            self.stats.lines += len(messages)
            self.stats.bytes += sum(len(message) for message in messages)
            lines = [Line(message, host=sender or None) for message, sender in zip(messages, senders, strict=True)]
            if not emit(Batch(lines), wait=wait):
                self._dropped(len(messages), stop.is_set())

        serve(self.config, deliver, self.warn, stop, self.on_ready, self.syslog)

    def close(self) -> None:
        """The sockets are closed when ``serve`` returns."""

    def _dropped(self, count: int, stopping: bool) -> None:
        """Counted always; said at the first drop and whenever the count gains a digit, not once per batch."""
        before = self.syslog.dropped
        self.syslog.dropped += count
        if before == 0 or len(str(before)) < len(str(self.syslog.dropped)):
            why = "arrived while stopping" if stopping else "came while the pipeline was full (a slow or failed sink)"
            self.warn(f"syslog: {self.syslog.dropped:,} message(s) dropped so far; the last {count} {why}; "
                      "--queue-dir DIR gives bursts room")  # fmt: skip

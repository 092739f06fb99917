"""Events to a Fluentd or Fluent Bit ``in_forward``, through fluent-logger's FluentSender.

FluentSender sends one Message-mode packet per emit, keeps a failed packet
only until the next emit, and hands what exceeds ``bufmax`` to a
``buffer_overflow_handler`` that does nothing by default: data lost without a
word. Here the pending list is ours: an event leaves it only after its emit
succeeded, FluentSender's own buffer is emptied after every failure (so
nothing is sent twice), its overflow handler puts packets back in our list,
and the list is bounded: when full, new events are refused (OutputFull), so a
Forward receiver withholds its ack and the sender keeps the chunk. Events
still pending at close are counted and logged as lost.

There is no ack in fluent-logger: an event is "sent" once the kernel took it.
A peer that dies after that loses what was in flight (at-least-once only up
to the socket).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgpack
from fluent.sender import EventTime, FluentSender

from named_senderr.errors import ConfigError
from named_senderr.event import Event
from named_senderr.sources.forward_server import OutputFull

DEFAULT_TAG = "named_senderr.send_error"


@dataclass(frozen=True)
class ForwardOutputConfig:
    """A Fluent peer; ``max_pending`` events wait in memory while it is down, then new ones are refused."""

    host: str
    port: int
    tag: str = DEFAULT_TAG
    max_pending: int = 10_000
    timeout: float = 3.0

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--to-forward port {self.port} is not between 1 and 65535")
        if self.max_pending < 1:
            raise ConfigError(f"--max-pending {self.max_pending} must be at least 1")
        if not self.tag:
            raise ConfigError("--tag is empty; Fluentd routes by tag, give one such as named_senderr.send_error")


@dataclass
class ForwardCounters:
    sent: int = 0
    failed_attempts: int = 0  # emits that failed; their events stayed pending
    refused: int = 0  # events refused because the pending list was full
    reclaimed: int = 0  # packets FluentSender gave to its overflow handler, put back in our list
    unencodable: int = 0  # records msgpack cannot write (never sendable)
    lost: int = 0  # pending at close with the peer still down


def event_time(event: Event) -> EventTime:
    """The event's own time as Fluentd's EventTime; now when the line had none."""
    if event.timestamp:
        try:
            moment = datetime.fromisoformat(event.timestamp)
            return EventTime(int(moment.timestamp()), moment.microsecond * 1000)
        except ValueError:
            pass
    return EventTime.from_unix_nano(time.time_ns())


class ForwardOutput:
    """An Output (see sources/forward_server.py) that emits each event as one Forward Message."""

    def __init__(
        self,
        config: ForwardOutputConfig,
        render: Callable[[Event], dict],
        log: logging.Logger,
        sender: FluentSender | None = None,
    ) -> None:
        self.config = config
        self.render = render
        self.log = log
        self.counters = ForwardCounters()
        self.peer = f"{config.host}:{config.port}"
        self._pending: deque[tuple[msgpack.ExtType | int, dict]] = deque()
        self._down = False
        self._sender = sender or FluentSender(
            config.tag,
            host=config.host,
            port=config.port,
            timeout=config.timeout,
            forward_packet_error=False,  # its default replaces an unencodable record with an error record
        )
        self._sender.buffer_overflow_handler = self._reclaim

    @property
    def pending(self) -> int:
        return len(self._pending)

    def __call__(self, events: list[Event]) -> None:
        self.flush()
        room = self.config.max_pending - len(self._pending)
        if len(events) > room:
            self.counters.refused += len(events)
            raise OutputFull(
                f"Fluent peer {self.peer} is unreachable and {len(self._pending)} events already wait "
                f"(--max-pending {self.config.max_pending})"
            )
        self._pending.extend((event_time(event), self.render(event)) for event in events)
        self.flush()

    def flush(self) -> bool:
        """Emit pending events in order until one fails; True when none is left."""
        sender = self._sender
        while self._pending:
            when, record = self._pending[0]
            try:
                ok = sender.emit_with_time(None, when, record)
            except Exception as exc:  # msgpack refused the record: it can never be sent
                self._pending.popleft()
                self.counters.unencodable += 1
                self.log.error("record not sendable to %s (%s); dropped: %r", self.peer, exc, record)
                continue
            if not ok:
                with sender.lock:
                    sender.pendings = None  # the packet stays first in our list; FluentSender must not resend it
                self.counters.failed_attempts += 1
                if not self._down:
                    self._down = True
                    self.log.warning(
                        "Fluent peer %s unreachable (%s); %d events pending, retried on every flush",
                        self.peer, sender.last_error, len(self._pending),
                    )  # fmt: skip
                return False
            self._pending.popleft()
            self.counters.sent += 1
        if self._down:
            self._down = False
            self.log.info("Fluent peer %s reachable again; pending events delivered", self.peer)
        return True

    def close(self) -> None:
        """A last flush; what the peer still did not take is counted and logged as lost."""
        self.flush()
        self._sender.close()  # hands anything it still holds to _reclaim, so it is counted below
        if self._pending:
            self.counters.lost += len(self._pending)
            self.log.error(
                "%d events not delivered to %s (peer down at shutdown); they are lost", len(self._pending), self.peer
            )
            self._pending.clear()

    def _reclaim(self, packets: bytes) -> None:
        """FluentSender's overflow handler: its packets go back to the front of our list, none dropped."""
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(packets)
        entries = [(when, record) for _tag, when, record in unpacker]
        self.counters.reclaimed += len(entries)
        self._pending.extendleft(reversed(entries))
        self.log.warning("reclaimed %d events from fluent-logger's overflow buffer for %s", len(entries), self.peer)

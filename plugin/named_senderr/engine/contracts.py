"""What every source, stage and delivery gives the runner.

A source hands the runner batches of raw lines, each with an ``ack`` that
moves the source's position (a file checkpoint, a Forward ack). The runner
calls it only once the next stage durably holds the batch's events: the disk
queue when there is one, else every sink. Stages turn events into events and
may hold some back (rollup); a delivery takes events, each for every sink or
for the sinks its ``Route`` names (a branching ``run --config`` graph), and
says how far they are durable. These are the only shapes the runner knows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from named_senderr.event import Event
from named_senderr.lines import Emit

Route = frozenset[int]  # the sinks one event goes to, by their index in the delivery


class Source(Protocol):
    """Produces batches until its input ends or ``stop`` is set; ``close`` comes after the last ack."""

    name: str

    def run(self, emit: Emit, stop: threading.Event) -> None: ...

    def close(self) -> None: ...


class Stage(Protocol):
    """One transform: events in, events out, some possibly held back for later."""

    def process(self, events: list[Event], seq: int) -> list[Event]:
        """The events to pass on; ``seq`` numbers the source batch they came from."""
        ...

    def rollback(self) -> None:
        """Undo the last ``process``: the delivery refused its output whole, and the source sends the batch again."""
        ...

    def flush(self, final: bool) -> list[Event]:
        """Held events that are due now (all of them when ``final``)."""
        ...

    def oldest_held(self) -> int | None:
        """The smallest batch ``seq`` whose events are still held here, or None."""
        ...


class Delivery(Protocol):
    """Where transformed events go: the disk queue, or straight to the sinks."""

    def ready(self) -> bool:
        """Room for more right now (checked before a refusable batch is transformed)."""
        ...

    def put(self, events: list[Event], seq: int, wait: bool = True, routes: Sequence[Route] | None = None) -> bool:
        """Take ``events`` of batch ``seq``; False when they were refused whole (the source must resend).

        With ``wait`` a full delivery blocks until there is room; without it (the source's ``emit`` was
        called with ``wait=False``) it refuses at once. ``routes``, one per event: the sinks it goes to;
        None: every sink. ``seq`` may be older than an earlier put's (held events let go of later).
        """
        ...

    def durable_through(self) -> int:
        """The highest batch ``seq`` whose events, and those of every earlier batch, are durably held."""
        ...

    def tick(self) -> None:
        """Time-driven work: batches whose first event waited long enough leave."""
        ...

    def failed(self) -> bool:
        """A sink failed for good: reading should stop."""
        ...

    def close(self, stop: threading.Event) -> None:
        """Deliver what is held (after ``stop``, within the shutdown timeout), then release everything."""
        ...

"""The one runner: sources -> parse -> stages -> delivery, acknowledgements, backpressure, stopping, progress.

Every command is this runner with other parts. Each source runs in its own
thread (the first in the caller's) and hands batches to ``emit``; one lock
keeps the transforms and the delivery single-threaded. The stages are a
chain, or a graph (engine/topology.py) whose branches route each event to
the sinks that read it. A batch's ``ack`` is called once the delivery holds
its events durably (on every sink they went to) and no stage on any branch
still holds any of them, in the order the batches came. A ticker thread
sends batches that waited long enough, closes idle rollup windows and
reports progress; what a stage lets go of then is handed on as part of the
oldest batch it held, so no ack passes it before it is durable.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from named_senderr.engine.contracts import Delivery, Source, Stage
from named_senderr.engine.topology import Delivered, Topology
from named_senderr.engine.transforms import ParseLines
from named_senderr.lines import Ack, Batch, Emit, no_ack

TICK = 0.1  # seconds between the ticker's looks


@dataclass
class SourceCounters:
    """What the pipeline took from one source, and what it refused (the source keeps it, unacknowledged)."""

    batches: int = 0  # with at least one line
    lines: int = 0
    refused: int = 0


@dataclass
class Runner:
    """Run ``sources`` through ``parse``, ``stages`` and ``delivery`` until they end or ``stop`` is set."""

    sources: list[Source]
    parse: ParseLines
    stages: list[Stage] | Topology  # one after another (every command's options), or a graph (run --config)
    delivery: Delivery
    stop: threading.Event = field(default_factory=threading.Event)
    report: Callable[[], None] | None = None
    report_every: float = 0.5
    counters: dict[str, SourceCounters] = field(default_factory=dict)  # by source name, for /metrics
    stopped: bool = False  # reading stopped early because a sink failed
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _seq: int = field(default=0, init=False)
    _acks: deque[tuple[int, Ack]] = field(default_factory=deque, init=False)
    _reading: threading.Event = field(default_factory=threading.Event, init=False)  # set: stop reading
    _topology: Topology = field(init=False)
    _closing: bool = field(default=False, init=False)  # every source returned: nothing more is taken
    _undelivered: int | None = field(default=None, init=False)  # the oldest batch whose held events were refused

    def __post_init__(self) -> None:
        self._topology = self.stages if isinstance(self.stages, Topology) else Topology.chain(self.stages)

    def run(self) -> None:
        """Blocks until every source ended (or was stopped) and the delivery let go of what it held."""
        ticker = threading.Thread(target=self._tick, name="engine ticker", daemon=True)
        ticker.start()
        watcher = threading.Thread(target=self._watch, name="engine stop", daemon=True)
        watcher.start()
        others = [threading.Thread(target=s.run, args=(self._emit_for(s), self._reading), name=s.name, daemon=True)
                  for s in self.sources[1:]]  # fmt: skip
        try:
            for thread in others:
                thread.start()
            if self.sources:
                self.sources[0].run(self._emit_for(self.sources[0]), self._reading)
            for thread in others:
                thread.join()
        finally:
            self._reading.set()
            ticker.join()
            with self._lock:
                self._closing = True
                self._flush(final=True)
            self.delivery.close(self.stop)
            with self._lock:
                self._release()
            for source in self.sources:
                source.close()

    def _emit_for(self, source: Source) -> Emit:
        """``emit`` counting into the source's counters; its batches enter the graph at the source's name."""
        counters = self.counters.setdefault(source.name, SourceCounters())

        def emit(batch: Batch, *, wait: bool = True) -> bool:
            return self.emit(batch, wait=wait, counters=counters, origin=source.name)

        return emit

    def emit(
        self, batch: Batch, *, wait: bool = True, counters: SourceCounters | None = None, origin: str = ""
    ) -> bool:
        """Take ``batch`` through the transforms to the delivery; False when refused (not acknowledged).

        A source still handing on what it had in hand when told to stop (a frame in hand-off, the datagrams in
        a socket's buffer) is served until it returns; after a sink failed for good, nothing is taken.
        """
        counters = counters or SourceCounters()
        with self._lock:
            if self._closing or self.stopped or (not wait and not self.delivery.ready()):
                counters.refused += 1
                return False
            self._seq += 1
            seq = self._seq
            events = self.parse(batch.lines)
            if not self._put(self._topology.process(origin, events, seq), seq, wait):
                self._topology.rollback()  # so that the batch, sent again, is counted once
                counters.refused += 1
                return False
            counters.batches += bool(batch.lines)
            counters.lines += len(batch.lines)
            if batch.ack is not no_ack:
                self._acks.append((seq, batch.ack))
            self._release()
            if self.delivery.failed():
                self.stopped = True
                self._reading.set()
            return True

    def _put(self, delivered: Delivered, seq: int, wait: bool = True) -> bool:
        events, routes = delivered
        return self.delivery.put(events, seq, wait, routes)

    def _flush(self, final: bool) -> None:
        """What the stages let go of, to the delivery as part of the oldest batch they held."""
        seq = self._topology.oldest_held() or self._seq
        delivered = self._topology.flush(final, seq)
        if delivered[0] and not self._put(delivered, seq):  # refused (stopping, a full disk): never acknowledge it
            self._undelivered = seq if self._undelivered is None else min(self._undelivered, seq)

    def _release(self) -> None:
        """Acknowledge, in order, every batch the delivery holds durably and no stage still holds."""
        through = self.delivery.durable_through()
        for held in (self._topology.oldest_held(), self._undelivered):
            if held is not None:
                through = min(through, held - 1)
        while self._acks and self._acks[0][0] <= through:
            self._acks.popleft()[1]()

    def tick(self) -> None:
        """One look: stages let go of what is due, batches that waited leave, acks that became safe move."""
        with self._lock:
            self._flush(final=False)
            self.delivery.tick()
            self._release()
            if self.delivery.failed():
                self.stopped = True
                self._reading.set()

    def _tick(self) -> None:
        next_report = time.monotonic() + self.report_every
        while not self._reading.wait(TICK):
            self.tick()
            if self.report is not None and time.monotonic() >= next_report:
                self.report()
                next_report = time.monotonic() + self.report_every

    def _watch(self) -> None:
        """A signal (``stop``) ends reading; the delivery then gets its shutdown time."""
        while not self._reading.is_set():
            if self.stop.wait(TICK):
                self._reading.set()

"""A sink's worker threads behind a bounded queue.

The reading thread parses and encodes; the workers compress, send and retry,
so network waits overlap with parsing (zlib and sockets release the GIL).
The queue holds at most ``depth`` batches: when the sink falls behind, the
reader waits, and memory stays at a few batches whatever the input size.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from named_senderr.queue.driver import Driver, Halted, SinkCounters
from named_senderr.sinks.outcome import Sink, SinkFailed

_STOP = object()
POLL = 0.2  # seconds between checks for a failed sink while the queue is full
HALT_GRACE = 1.0  # seconds a halted worker gets to notice; one stuck in a send is left behind


class SinkWorkers:
    """``done(tag)`` is called from a worker once the batch submitted with ``tag`` is settled: stored, already
    there, dead-lettered, or abandoned to the dead-letter file because the sink stopped.

    Once ``halt`` is set (a shutdown whose time ran out) nothing more is sent or waited for: the batches
    not settled by then never are, so whoever acknowledges on ``done`` does not acknowledge them.
    """

    def __init__(
        self,
        sink: Sink,
        make_driver: Callable[[], Driver],
        counters: SinkCounters,
        done: Callable[[Any], None] | None = None,
        halt: threading.Event | None = None,
    ) -> None:
        self.sink = sink
        self.counters = counters
        self._done = done
        self._halt = halt or threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=sink.workers)
        self._drivers = [make_driver() for _ in range(sink.workers)]
        self._threads = [
            threading.Thread(target=self._run, args=(driver,), name=f"{sink.name} #{n}", daemon=True)
            for n, driver in enumerate(self._drivers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: list[Any], tag: Any = None) -> bool:
        """Queue ``batch``, waiting while the queue is full; once the sink has failed, dead-letter it, False.

        Once halted: False, and ``batch`` is left unsettled.
        """
        handed = time.monotonic()  # its latency counts the wait for room too
        while not self.counters.failed:
            if self._halt.is_set():
                return False
            try:
                self._queue.put((batch, tag, handed), timeout=POLL)
                return True
            except queue.Full:
                continue
        self._drivers[0].abandon(batch, f"not sent: the sink had stopped ({self.counters.failed})")
        self._settled(tag)
        return False

    def has_room(self) -> bool:
        """A batch submitted now would not wait."""
        return not self._queue.full()

    def close(self) -> None:
        """Let the workers finish what is queued, then stop them (the sink stays open: its opener closes it).

        Once halted, they are waited for only ``HALT_GRACE`` seconds.
        """
        for _ in self._threads:
            while not self._halt.is_set():
                try:
                    self._queue.put(_STOP, timeout=POLL)
                    break
                except queue.Full:
                    continue
        for thread in self._threads:
            while thread.is_alive() and not self._halt.is_set():
                thread.join(POLL)
            thread.join(HALT_GRACE)

    def _run(self, driver: Driver) -> None:
        while not self._halt.is_set():
            try:
                entry = self._queue.get(timeout=POLL)
            except queue.Empty:
                continue
            if entry is _STOP:
                return
            batch, tag, handed = entry
            if self._deliver(driver, batch):
                self.counters.settled(time.monotonic() - handed)
                self._settled(tag)

    def _deliver(self, driver: Driver, batch: list[Any]) -> bool:
        """False when halted before ``batch`` was settled."""
        if self._halt.is_set():
            return False
        if self.counters.failed:
            driver.abandon(batch, f"not sent: the sink had stopped ({self.counters.failed})")
            return True
        try:
            driver.deliver(batch)
        except Halted:
            return False
        except SinkFailed as exc:
            self.counters.fail(str(exc))
        except Exception as exc:  # a bug must stop the run, not hang the reader
            driver.abandon(batch, f"not sent: internal error {exc!r}")
            self.counters.fail(f"{self.sink.name}: internal error {exc!r}; please report it")
        return True

    def _settled(self, tag: Any) -> None:
        if self._done is not None:
            self._done(tag)

"""Files followed across rotation (sources/file_tail.py) as an engine source.

The checkpoint moves past a poll's lines only when the runner acknowledges
that poll's batch, which it does once the events are durably held. Acks may
come from any thread; they are applied by the source's own thread, before
its next poll and at ``close``, since the tail is not shared between threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from named_senderr.engine.contracts import Batch, Emit, Line
from named_senderr.sources.file_tail import FileTail, TailBatch, TailConfig
from named_senderr.telemetry import Stats


@dataclass
class FollowSource:
    config: TailConfig
    stats: Stats
    warn: Callable[[str], None]
    name: str = "follow"
    _tail: FileTail | None = field(default=None, init=False)
    _acked: queue.SimpleQueue[TailBatch] = field(default_factory=queue.SimpleQueue, init=False)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self._tail = tail = FileTail(self.config, self.stats, self.warn)
        self.stats.inputs += len(self.config.globs)  # += : other sources may count into the same stats
        while not stop.is_set():
            self._commit()
            polled = tail.poll()
            lines = [Line(line.raw, line.path, line.offset, None, line.oversize) for line in polled.lines]
            if not emit(Batch(lines, lambda polled=polled: self._acked.put(polled))):
                return  # refused (stopping): these lines are read again at the next start
            self._commit()  # a disk queue acknowledges within emit: move the checkpoint at once
            if not polled.more:
                stop.wait(self.config.poll_interval)

    def close(self) -> None:
        if self._tail is not None:
            self._commit()
            self._tail.close()

    def _commit(self) -> None:
        while not self._acked.empty():
            self._acked.get().commit()

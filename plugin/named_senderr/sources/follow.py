"""Files followed across rotation (sources/file_tail.py) as an engine source.

The checkpoint moves past a poll's lines only when the runner acknowledges
that poll's batch, which it does once the events are durably held. Acks may
come from any thread; they are applied by the source's own thread, before
its next poll and at ``close``, since the tail is not shared between threads.
With ``batch_lines`` a poll is handed on in parts of at most that many lines,
each acknowledged on its own: what a crash can repeat is one part, not a poll.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from named_senderr.lines import Ack, Batch, Emit, Line
from named_senderr.sources.file_tail import FileTail, TailBatch, TailConfig
from named_senderr.telemetry import Stats


@dataclass
class FollowSource:
    config: TailConfig
    stats: Stats
    warn: Callable[[str], None]
    batch_lines: int | None = None  # at most this many lines a batch; None: a whole poll's
    name: str = "follow"
    _tail: FileTail | None = field(default=None, init=False)
    _counted: int = field(default=0, init=False)  # files this source has added to stats.inputs
    _acked: queue.SimpleQueue[Ack] = field(default_factory=queue.SimpleQueue, init=False)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self._tail = tail = FileTail(self.config, self.stats, self.warn)
        while not stop.is_set():
            self._commit()
            polled = tail.poll()
            self.stats.inputs += len(tail.followed) - self._counted  # other sources count into the same stats
            self._counted = len(tail.followed)
            for batch in self._batches(polled):
                if not emit(batch):
                    return  # refused (stopping): these lines are read again at the next start
                self._commit()  # a disk queue or stdout acknowledges within emit: move the checkpoint at once
            if not polled.more:
                stop.wait(self.config.poll_interval)

    def close(self) -> None:
        if self._tail is not None:
            self._commit()
            self._tail.close()

    def _batches(self, polled: TailBatch) -> Iterator[Batch]:
        """The poll's lines in parts; the last part's ack commits the whole poll (files with nothing new too)."""
        lines = [Line(line.raw, line.path, line.offset, None, line.oversize) for line in polled.lines]
        size = self.batch_lines or max(len(lines), 1)
        start = 0
        for end in range(size, len(lines), size):
            yield Batch(lines[start:end], partial(self._acked.put, partial(polled.commit_through, end)))
            start = end
        yield Batch(lines[start:], partial(self._acked.put, polled.commit))

    def _commit(self) -> None:
        while not self._acked.empty():
            self._acked.get()()

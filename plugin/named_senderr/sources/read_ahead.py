"""Read the next batches of a file while the pipeline works on this one.

Reading and scanning a plain file (``readinto`` and hyperscan) run without
the GIL, so a thread doing them overlaps with parsing and writing on the
other core: a mixed log's wall time becomes the longer of the two, not their
sum. At most ``depth`` batches wait, so memory stays flat in file size. The
batches, and any error of the reader, come out in the order the reader made
them; ``close`` (also on leaving early) stops the reader and closes its file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
DEPTH = 2
_POLL = 0.1  # seconds: how soon a stopped reader notices it, when blocked on a full queue


class _End:
    """The reader's last item: the iterator ran out, or raised ``error``."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """``items``, produced by a thread of their own, started at once, up to ``depth`` ahead of the caller."""

    def __init__(self, items: Iterator[T], depth: int = DEPTH) -> None:
        self._items = items
        self._ready: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._reader = threading.Thread(target=self._produce, name="read-ahead", daemon=True)
        self._reader.start()

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._ready.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader (its ``finally`` runs in its thread) and wait for it."""
        self._stopped.set()
        self._reader.join()

    def _put(self, item: T | _End) -> bool:
        while not self._stopped.is_set():
            try:
                self._ready.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            self._put(_End(exc))
            return
        finally:
            if self._stopped.is_set():
                close = getattr(self._items, "close", None)
                if close is not None:
                    close()  # a generator's ``finally`` closes its file in this thread
        self._put(_End(None))

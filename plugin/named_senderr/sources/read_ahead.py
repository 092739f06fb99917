"""Read the next batches of a file while the pipeline works on this one.

Reading and scanning a plain file (``readinto`` and hyperscan) run without
the GIL, so a second thread doing them overlaps with parsing and writing on
the other core: a mixed log's wall time becomes the longer of the two, not
their sum. At most ``depth`` batches wait, so memory stays flat in file size.
The batches, and any error of the reader, come out in the order the reader
made them; closing the iterator early stops the reader and closes its file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
DEPTH = 2
_POLL = 0.1  # seconds: how soon a stopped reader notices it, when blocked on a full queue


class _End:
    """The reader's last item: the iterator ran out, or raised ``error``."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def read_ahead(items: Iterator[T], depth: int = DEPTH) -> Iterator[T]:
    """``items``, produced by a thread of their own up to ``depth`` ahead of the caller."""
    ready: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def put(item: T | _End) -> bool:
        while not stopped.is_set():
            try:
                ready.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            put(_End(exc))
            return
        finally:
            if stopped.is_set():
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # a generator's ``finally`` closes its file in this thread
        put(_End(None))

    reader = threading.Thread(target=produce, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stopped.set()
        reader.join()

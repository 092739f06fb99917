"""Collect encoded items into batches bounded by count, bytes and age.

Pure bookkeeping with an injected clock: no thread, no timer. The reading
loop asks ``add`` for each item and ``take`` at the end; a batch never
exceeds ``max_bytes`` unless one item alone does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from named_senderr.settings.ship import BatchConfig


class Batcher:
    """One per sink; ``add`` returns the finished batch, if adding closed one."""

    def __init__(self, config: BatchConfig, clock: Callable[[], float]) -> None:
        self.max_events = config.max_events
        self.max_bytes = config.max_bytes
        self.max_wait = config.max_wait
        self.clock = clock
        self._items: list[Any] = []
        self._bytes = 0
        self._started = 0.0

    def add(self, item: Any, size: int) -> list[Any] | None:
        """Append ``item``; the batch it closes, if any (the item then starts the next one)."""
        closed = self.add_all(((item, size),))
        return closed[0] if closed else None

    def add_all(self, sized: Iterable[tuple[Any, int]]) -> list[list[Any]]:
        """Append each ``(item, size)`` in turn; the batches they closed, at most one per item.

        One loop over a source batch's items instead of a call each, and the clock read once:
        the items arrive at one moment.
        """
        closed = []
        items, total, started = self._items, self._bytes, self._started
        max_events, max_bytes, max_wait, now = self.max_events, self.max_bytes, self.max_wait, self.clock()
        for item, size in sized:
            done = False
            if items and total + size > max_bytes:
                closed.append(items)
                items, total, done = [], 0, True
            if not items:
                started = now
            items.append(item)
            total += size
            if not done and (len(items) >= max_events or total >= max_bytes or now - started >= max_wait):
                closed.append(items)
                items, total = [], 0
        self._items, self._bytes, self._started = items, total, started
        return closed

    def expired(self) -> bool:
        """The oldest waiting item has waited ``max_wait``."""
        return bool(self._items) and self.clock() - self._started >= self.max_wait

    def take(self) -> list[Any] | None:
        """The waiting items as a batch (None if there are none); starts afresh."""
        if not self._items:
            return None
        items, self._items, self._bytes = self._items, [], 0
        return items

    def __len__(self) -> int:
        return len(self._items)

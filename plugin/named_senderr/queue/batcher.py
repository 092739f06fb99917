"""Collect encoded items into batches bounded by count, bytes and age.

Pure bookkeeping with an injected clock: no thread, no timer. The reading
loop asks ``add`` for each item and ``take`` at the end; a batch never
exceeds ``max_bytes`` unless one item alone does.
"""

from __future__ import annotations

from collections.abc import Callable
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
        done = None
        if self._items and self._bytes + size > self.max_bytes:
            done = self.take()
        if not self._items:
            self._started = self.clock()
        self._items.append(item)
        self._bytes += size
        if done is None and (len(self._items) >= self.max_events or self._bytes >= self.max_bytes or self.expired()):
            done = self.take()
        return done

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

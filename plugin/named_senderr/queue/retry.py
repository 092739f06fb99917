"""Backoff math: capped exponential growth with jitter, and when to give up.

Half of each wait is fixed and half random ("equal jitter"): many clients that
failed together spread out, yet none comes back at once into a 429 storm.
A server's Retry-After is honoured up to the cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from named_senderr.settings.ship import RetryConfig

MAX_EXPONENT = 64


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    initial: float = 0.5
    maximum: float = 30.0
    deadline: float = 300.0
    multiplier: float = 2.0

    @classmethod
    def from_config(cls, config: RetryConfig) -> RetryPolicy:
        return cls(config.max_attempts, config.initial_backoff, config.max_backoff, config.deadline)

    def delay(self, attempt: int, retry_after: float | None = None, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        # Any cap is reached long before 64 doublings; a float power overflows past ~1024.
        cap = min(self.maximum, self.initial * self.multiplier ** min(attempt - 1, MAX_EXPONENT))
        wait = cap / 2 + rand() * cap / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.maximum))
        return wait

    def gives_up(self, attempts: int, elapsed: float, next_delay: float) -> bool:
        """True when another attempt would exceed the attempts or the time allowed for one batch."""
        return attempts >= self.max_attempts or elapsed + next_delay > self.deadline

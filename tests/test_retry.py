"""Backoff math: growth, cap, jitter bounds, Retry-After, and when a batch is given up."""

from __future__ import annotations

from named_senderr.queue.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, initial=1.0, maximum=8.0, deadline=60.0)


def test_wait_doubles_per_attempt() -> None:
    assert [POLICY.delay(n, rand=lambda: 1.0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_wait_is_capped() -> None:
    assert POLICY.delay(10, rand=lambda: 1.0) == 8.0


def test_jitter_keeps_at_least_half_the_wait() -> None:
    assert POLICY.delay(3, rand=lambda: 0.0) == 2.0


def test_jitter_spreads_waits_between_half_and_full() -> None:
    waits = {POLICY.delay(3, rand=lambda r=r: r) for r in (0.0, 0.25, 0.5, 0.99)}
    assert len(waits) == 4 and all(2.0 <= w <= 4.0 for w in waits)


def test_retry_after_is_honoured() -> None:
    assert POLICY.delay(1, retry_after=5.0, rand=lambda: 0.0) == 5.0


def test_retry_after_is_capped() -> None:
    assert POLICY.delay(1, retry_after=3600.0, rand=lambda: 0.0) == 8.0


def test_gives_up_after_max_attempts() -> None:
    assert POLICY.gives_up(5, elapsed=0.0, next_delay=1.0)
    assert not POLICY.gives_up(4, elapsed=0.0, next_delay=1.0)


def test_gives_up_when_the_next_wait_passes_the_deadline() -> None:
    assert POLICY.gives_up(1, elapsed=55.0, next_delay=8.0)


def test_a_very_late_attempt_waits_the_cap_instead_of_overflowing() -> None:
    assert RetryPolicy(max_attempts=100_000, maximum=30.0).delay(100_000, rand=lambda: 1.0) == 30.0

"""Batches close by count, by bytes and by age; a clock is injected, nothing waits."""

from __future__ import annotations

from named_senderr.queue.batcher import Batcher
from named_senderr.settings.ship import BatchConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def batcher(clock: Clock | None = None, **limits) -> Batcher:
    config = BatchConfig(**{"max_events": 3, "max_bytes": 2048, "max_wait": 1.0, **limits})
    return Batcher(config, clock or Clock())


def test_batch_closes_at_max_events() -> None:
    b = batcher()
    assert [b.add(n, 10) for n in range(3)] == [None, None, [0, 1, 2]]


def test_item_that_would_pass_max_bytes_starts_the_next_batch() -> None:
    b = batcher(max_events=100)
    assert b.add("a", 1500) is None
    assert b.add("b", 1000) == ["a"]
    assert b.take() == ["b"]


def test_batch_closes_when_it_reaches_max_bytes() -> None:
    assert batcher(max_events=100).add("a", 2048) == ["a"]


def test_oversized_item_travels_alone() -> None:
    b = batcher(max_events=100)
    b.add("small", 10)
    assert b.add("huge", 10_000) == ["small"]
    assert b.take() == ["huge"]


def test_batch_closes_when_its_first_item_waited_max_wait() -> None:
    clock = Clock()
    b = batcher(clock, max_events=100)
    b.add("a", 10)
    clock.now += 1.0
    assert b.add("b", 10) == ["a", "b"]


def test_expired_reports_an_old_waiting_batch() -> None:
    clock = Clock()
    b = batcher(clock, max_events=100)
    b.add("a", 10)
    clock.now += 0.5
    assert not b.expired()
    clock.now += 0.5
    assert b.expired()


def test_take_on_empty_is_none() -> None:
    assert batcher().take() is None


def test_add_all_closes_the_same_batches_as_adding_one_by_one() -> None:
    sizes = [10, 1500, 700, 2048, 5, 5, 5, 10_000, 1, 900, 900, 900]
    one, many = batcher(max_events=3), batcher(max_events=3)
    singly = [done for n, size in enumerate(sizes) if (done := one.add(n, size)) is not None]
    assert many.add_all(enumerate(sizes)) == singly and many.take() == one.take()


def test_add_all_closes_a_batch_whose_first_item_waited_max_wait() -> None:
    clock = Clock()
    b = batcher(clock, max_events=100)
    b.add("a", 10)
    clock.now += 1.0
    assert b.add_all([("b", 10), ("c", 10)]) == [["a", "b"]]
    assert b.take() == ["c"]

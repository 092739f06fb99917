"""The one retry loop, driven by a scripted sink and a fake clock: every test runs instantly."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from named_senderr.queue.driver import DeadLetter, Driver, RetryNotices, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.sinks.outcome import Outcome, SinkFailed


class ScriptedSink:
    """Answers each ``send`` with the next function of ``script`` applied to the batch."""

    name = "scripted+http://h"
    workers = 1

    def __init__(self, *script) -> None:
        self.script = list(script)
        self.sent: list[list] = []

    def send(self, items: list) -> Outcome:
        self.sent.append(list(items))
        answer = self.script.pop(0) if self.script else (lambda batch: Outcome(delivered=len(batch)))
        return answer(items)

    def dead_record(self, item) -> dict:
        return {"item": item}

    def drop_stored(self, items: list) -> list:
        return [item for item in items if item not in self.stored]

    stored: frozenset = frozenset()


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run(sink: ScriptedSink, items: list, tmp_path: Path, **policy) -> tuple[SinkCounters, FakeTime, Path]:
    time = FakeTime()
    counters = SinkCounters()
    path = tmp_path / "dead.ndjson"
    dead = DeadLetter(path)
    driver = Driver(sink, RetryPolicy(**{"max_attempts": 4, "initial": 1.0, "maximum": 4.0, **policy}), dead, counters,
                    time.clock, time.sleep, rand=lambda: 1.0)  # fmt: skip
    try:
        driver.deliver(items)
    finally:
        dead.close()
    return counters, time, path


def dead_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_only_failed_items_are_sent_again(tmp_path: Path) -> None:
    sink = ScriptedSink(lambda batch: Outcome(delivered=2, retry=[batch[1]], error="429"))
    counters, _, _ = run(sink, ["a", "b", "c"], tmp_path)
    assert sink.sent == [["a", "b", "c"], ["b"]]
    assert (counters.sent, counters.retried) == (3, 1)


def test_waits_grow_between_attempts(tmp_path: Path) -> None:
    storm = lambda batch: Outcome(retry=batch, error="429")  # noqa: E731
    _, time, _ = run(ScriptedSink(storm, storm, storm), ["a"], tmp_path)
    assert time.slept == [1.0, 2.0, 4.0]


def test_retry_after_sets_the_wait(tmp_path: Path) -> None:
    _, time, _ = run(ScriptedSink(lambda b: Outcome(retry=b, error="429", retry_after=3.0)), ["a"], tmp_path)
    assert time.slept == [3.0]


def test_too_large_batch_is_split_in_halves_in_order(tmp_path: Path) -> None:
    sink = ScriptedSink(lambda b: Outcome(too_large=True))
    counters, _, _ = run(sink, ["a", "b", "c", "d"], tmp_path)
    assert sink.sent == [["a", "b", "c", "d"], ["a", "b"], ["c", "d"]]
    assert counters.sent == 4


def test_single_item_too_large_is_dead_lettered(tmp_path: Path) -> None:
    counters, _, path = run(ScriptedSink(lambda b: Outcome(too_large=True, error="413")), ["a"], tmp_path)
    assert counters.dead_lettered == 1
    assert "too large" in dead_lines(path)[0]["reason"]


def test_refused_items_go_to_the_dead_letter_file_with_the_reason(tmp_path: Path) -> None:
    sink = ScriptedSink(lambda b: Outcome(delivered=1, dead=[(b[1], "400: mapper_parsing_exception: bad ip")]))
    counters, _, path = run(sink, ["a", "b"], tmp_path)
    assert dead_lines(path)[0] | {"time": None} == {
        "time": None, "sink": sink.name, "reason": "400: mapper_parsing_exception: bad ip", "item": "b"
    }  # fmt: skip
    assert (counters.sent, counters.dead_lettered) == (1, 1)


def test_exhausted_attempts_dead_letter_the_batch_and_fail_the_sink(tmp_path: Path) -> None:
    storm = lambda batch: Outcome(retry=batch, error="503: unavailable")  # noqa: E731
    with pytest.raises(SinkFailed, match="gave up after 4 attempt"):
        run(ScriptedSink(*[storm] * 10), ["a", "b"], tmp_path)
    assert [d["item"] for d in dead_lines(tmp_path / "dead.ndjson")] == ["a", "b"]


def test_deadline_gives_up_before_sleeping_past_it(tmp_path: Path) -> None:
    storm = lambda batch: Outcome(retry=batch, error="503")  # noqa: E731
    with pytest.raises(SinkFailed):
        run(ScriptedSink(*[storm] * 10), ["a"], tmp_path, max_attempts=100, deadline=5.0)


def test_fatal_answer_fails_the_sink_at_once(tmp_path: Path) -> None:
    sink = ScriptedSink(lambda b: Outcome(fatal="401: bad credentials"))
    with pytest.raises(SinkFailed, match="401: bad credentials"):
        run(sink, ["a"], tmp_path)
    assert len(sink.sent) == 1


def test_duplicates_are_counted_apart(tmp_path: Path) -> None:
    counters, _, _ = run(ScriptedSink(lambda b: Outcome(delivered=1, duplicates=2)), ["a", "b", "c"], tmp_path)
    assert (counters.sent, counters.duplicates) == (1, 2)


def test_dead_letter_file_is_not_created_when_nothing_is_refused(tmp_path: Path) -> None:
    _, _, path = run(ScriptedSink(), ["a"], tmp_path)
    assert not path.exists()


def test_after_a_request_without_answer_only_what_the_store_lacks_is_sent_again(tmp_path):
    sink = ScriptedSink(lambda batch: Outcome(retry=list(batch), error="connection cut", unanswered=True))
    sink.stored = frozenset({"a", "b"})  # the store took part of the batch before the connection broke
    counters, _, _ = run(sink, ["a", "b", "c"], tmp_path)
    assert sink.sent == [["a", "b", "c"], ["c"]]
    assert (counters.sent, counters.duplicates) == (1, 2)


def test_after_a_429_the_store_is_not_asked(tmp_path):
    sink = ScriptedSink(lambda batch: Outcome(retry=list(batch), error="429"))
    sink.stored = frozenset({"a"})  # would be dropped if the driver asked
    run(sink, ["a", "b"], tmp_path)
    assert sink.sent == [["a", "b"], ["a", "b"]]


def notices_of(sink: ScriptedSink, items: list, tmp_path: Path) -> list[str]:
    """What the operator is told while ``sink`` is retried (deadline 60 s, a notice at most every 10 s)."""
    time, told = FakeTime(), []
    notices = RetryNotices(told.append, time.clock)
    policy = RetryPolicy(max_attempts=6, initial=4.0, maximum=8.0, deadline=60.0)
    driver = Driver(sink, policy, DeadLetter(tmp_path / "dead.ndjson"), SinkCounters(), time.clock, time.sleep,
                    rand=lambda: 1.0, notices=notices)  # fmt: skip
    driver.deliver(items)
    return told


def test_a_store_that_cannot_be_reached_is_told_at_the_first_failed_attempt(tmp_path: Path) -> None:
    cut = lambda batch: Outcome(retry=batch, error="cannot connect: refused", unanswered=True)  # noqa: E731
    told = notices_of(ScriptedSink(cut), ["a", "b"], tmp_path)
    assert told[0] == (
        "scripted+http://h: cannot reach the store (cannot connect: refused); retrying 2 event(s): attempt 1 of 6 "
        f"failed, next try in 4.0 s, 60 s of the 60 s retry budget left; when it runs out, they go to "
        f"{tmp_path / 'dead.ndjson'}"
    )


def test_retry_notices_repeat_at_most_every_ten_seconds(tmp_path: Path) -> None:
    storm = lambda batch: Outcome(retry=batch, error="429: too many requests")  # noqa: E731
    told = notices_of(ScriptedSink(*[storm] * 5), ["a"], tmp_path)  # told at 0 s, then waits 4, 8, 8, 8
    retrying = [line for line in told if "retrying" in line]
    assert [line.split("attempt ")[1][:1] for line in retrying] == ["1", "3", "5"]  # at 0, 12 and 28 s
    assert "the store answered 429: too many requests" in retrying[0]


def test_the_first_batch_stored_after_retries_says_the_store_takes_events_again(tmp_path: Path) -> None:
    cut = lambda batch: Outcome(retry=batch, error="cannot connect: refused", unanswered=True)  # noqa: E731
    told = notices_of(ScriptedSink(cut), ["a"], tmp_path)
    assert told[-1] == "scripted+http://h: the store takes events again"

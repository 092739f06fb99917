"""The C to_flat (named_senderr/_event_json.c) gives the reference's flat record, whatever the Event.

The same keys in the same order, the same values of the same types, or the same
exception: every rare case is handed to the reference. The tests skip where the
extension was not built and fail instead under CI=true (tests/native.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.event import _ACTIONS, Event, to_flat_reference
from named_senderr.native import PURE_PYTHON_ENV
from named_senderr.reasons import HINTS, hints_for
from tests import native_events as made
from tests.corpus import REAL_NAMED, load_cases
from tests.native import compiled

MODULE = "named_senderr._event_json"
ROLLUP = {"rollup_window": 60.0, "first_seen": "2021-10-21T10:22:00Z", "last_seen": "2021-10-21T10:23:00Z",
          "repeat_count": 7}  # fmt: skip
CALLERS = ["named_senderr.event", "named_senderr.engine.printing", "named_senderr.sinks.loki", "named_senderr.sinks.ids",
           "named_senderr.sinks.stdout", "named_senderr.sinks.forward", "named_senderr.sources.exec_filter"]  # fmt: skip


@pytest.fixture(scope="module")
def fast() -> Callable[[Event], dict]:
    return compiled(MODULE).to_flat


def typed(result: object) -> object:
    """A record as (key, type, value) in order: == alone takes 1 for True and 1.0 for 1."""
    if isinstance(result, dict):
        return [(key, type(value), value) for key, value in result.items()]
    return result


def same_outcome(fast: Callable[..., object], *args: object, **kwargs: object) -> bool:
    return typed(made.outcome(fast, *args, **kwargs)) == typed(made.outcome(to_flat_reference, *args, **kwargs))


def test_compiled_record_equals_the_reference_on_every_corpus_event(fast):
    events = made.parsed([case.line_bytes for case in load_cases()])
    assert len(events) > 100
    for e in events:
        assert typed(fast(e)) == typed(to_flat_reference(e)), e.original


@pytest.mark.parametrize("path", sorted(REAL_NAMED.glob("*.log")), ids=lambda p: p.name)
def test_compiled_record_equals_the_reference_on_every_event_of_the_real_named_logs(fast, path):
    events = made.parsed(path.read_bytes().splitlines())
    assert events
    for e in events:
        assert typed(fast(e)) == typed(to_flat_reference(e)), e.original


@pytest.mark.parametrize("bind", ["9.11", "9.18"])
def test_compiled_record_equals_the_reference_on_every_event_of_a_generated_log(fast, bind, tmp_path):
    events = made.generated_events(bind, tmp_path)
    assert len(events) > 1000
    for e in events:
        assert typed(fast(e)) == typed(to_flat_reference(e)), e.original


_kind_and_reason = st.sampled_from(sorted(_ACTIONS)).flatmap(
    lambda kind: st.tuples(st.just(kind), st.sampled_from(sorted(hints_for(kind))))
)


@settings(max_examples=500, deadline=None)
@given(kind_and_reason=_kind_and_reason, values=st.dictionaries(st.sampled_from(made.FIELDS), made.ODD, max_size=8))
def test_compiled_outcome_equals_the_reference_for_values_of_any_type_in_any_field(fast, kind_and_reason, values):
    kind, reason = kind_and_reason
    e = dataclasses.replace(made.client_event(message_kind=kind, reason=reason), **values)
    assert same_outcome(fast, e)


@pytest.mark.parametrize("window", [60.0, 0.0, 0, False, ""])
def test_a_rollup_gets_its_three_keys_appended_whenever_its_window_is_not_none(fast, window):
    e = made.client_event(**ROLLUP | {"rollup_window": window})
    record = fast(e)
    assert list(record)[-3:] == ["count", "first_seen", "last_seen"]
    assert typed(record) == typed(to_flat_reference(e))


def test_a_rollup_whose_window_ends_are_none_keeps_them_as_none(fast):
    e = made.client_event(**ROLLUP | {"first_seen": None, "last_seen": None})
    assert typed(fast(e)) == typed(to_flat_reference(e))
    assert (fast(e)["first_seen"], fast(e)["last_seen"]) == (None, None)


@pytest.mark.parametrize(
    "changes",
    [{"reason": "unknown_reason"}, {"message_kind": "unknown_kind", "reason": "unknown_reason"}, {"reason": ["x"]},
     {"message_kind": ["x"]}, {"reason": 7}],
)  # fmt: skip
def test_an_unknown_or_unhashable_reason_or_kind_raises_the_references_error(fast, changes):
    e = made.client_event(**changes)
    assert isinstance(made.outcome(fast, e), tuple)
    assert same_outcome(fast, e)


def test_a_kind_the_hint_tables_do_not_know_gets_the_shared_hint_as_the_reference_does(fast):
    e = made.client_event(message_kind="unknown_kind")
    assert fast(e)["hint"] == HINTS[e.reason]
    assert same_outcome(fast, e)


@pytest.mark.parametrize("field", [*made.FIELDS])
def test_an_unset_slot_gives_the_references_outcome(fast, field):
    for e in (made.client_event(), made.client_event(**ROLLUP)):
        delattr(e, field)
        assert same_outcome(fast, e)


def test_a_subclass_of_event_is_built_as_the_reference_does(fast):
    e = made.overridden()
    assert fast(e)["message"] == "overridden"
    assert same_outcome(fast, e)


@pytest.mark.parametrize(
    ("args", "kwargs"), [((), {"event": None}), ((), {}), ((None, None), {}), ((None,), {"extra": 1}), ((1,), {})]
)
def test_arguments_by_keyword_or_wrong_are_taken_as_the_reference_takes_them(fast, args, kwargs):
    call = [made.client_event() if arg is None else arg for arg in args]
    named = {key: made.client_event() if value is None else value for key, value in kwargs.items()}
    assert same_outcome(fast, *call, **named)


def test_each_record_is_a_new_dict_that_a_caller_may_change(fast):
    e = made.client_event()
    first = fast(e)
    first["hint"], first["extra"] = "changed", 1
    assert typed(fast(e)) == typed(to_flat_reference(e))


def test_every_kind_and_reason_gets_its_own_hint_however_many_pairs_are_seen(fast):
    pairs = [(kind, reason) for kind in sorted(_ACTIONS) for reason in sorted(hints_for(kind))]
    assert len(pairs) > 64  # more than the C side keeps
    events = [made.client_event(message_kind=kind, reason=reason) for kind, reason in pairs]
    for e in events + events:
        assert typed(fast(e)) == typed(to_flat_reference(e)), (e.message_kind, e.reason)


# Events down each path: the C one (plain, a rollup) and the reference's (an int subclass is still C's; a subclass
# of str as the kind, an unknown reason that raises).
LEAK_CHANGES = [{}, ROLLUP, {"pid": 2**70}, {"message_kind": type("Kind", (str,), {})("send_failed")},
                {"reason": "unknown_reason"}]  # fmt: skip


def test_building_keeps_every_reference_count(fast):
    events = [made.client_event(**changes) for changes in LEAK_CHANGES]
    made.repeat(fast, events, 2)  # the hint memo fills on the first round
    held = made.counted((*events, *(getattr(e, name) for e in events for name in made.FIELDS)))
    held += [hints_for(e.message_kind)[e.reason] for e in events[:2]]
    before = [sys.getrefcount(value) for value in held]
    made.repeat(fast, events, 2000)
    assert [sys.getrefcount(value) for value in held] == before


def test_building_keeps_memory_flat(fast):
    events = [made.client_event(**changes) for changes in LEAK_CHANGES]
    # 100,000 calls: a leaked record each would be over 100 MB.
    assert made.memory_growth(lambda rounds: made.repeat(fast, events, rounds), 20_000) < 100_000


@pytest.mark.parametrize("module", CALLERS)
def test_every_caller_of_to_flat_gets_the_compiled_one_when_it_was_built(module):
    assert importlib.import_module(module).to_flat is compiled(MODULE).to_flat


def test_pure_python_env_gives_every_caller_the_reference():
    code = ("import importlib, named_senderr.event as e;"
            f"print(all(importlib.import_module(m).to_flat is e.to_flat_reference for m in {CALLERS!r}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, PURE_PYTHON_ENV: "1"}, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "True", done.stderr

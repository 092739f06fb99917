"""The C ecs_json (named_senderr/_event_json.c) gives the bytes of the Python reference, whatever the Event.

Where the C encoder meets anything off its happy path it hands the call to the
reference, so every comparison here is of outcomes: the same bytes, or the same
exception. The tests skip where the extension was not built (no C compiler at
install) and fail instead under CI=true, whose machine has one.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.event import _ACTIONS, Event, _shared, ecs_json_reference
from named_senderr.native import PURE_PYTHON_ENV
from named_senderr.reasons import hints_for
from tests.corpus import REAL_NAMED, load_cases
from tests.native import compiled
from tests.native_events import (
    FIELDS,
    ODD,
    client_event,
    counted,
    generated_events,
    memory_growth,
    outcome,
    overridden,
    parsed,
    repeat,
)

MODULE = "named_senderr._event_json"
INGEST = "2026-01-01T00:00:00.000Z"
TEXT_FIELDS = ("timestamp", "client_ip", "scope", "client_ptr", "qname", "view", "signer", "netmgr_ptr", "zone",
               "zone_class", "host", "program", "category", "severity", "facility", "syslog_severity", "container",
               "file", "ingested", "destination_ip", "first_seen", "last_seen")  # fmt: skip
NUMBER_FIELDS = ("client_port", "pid", "priority", "offset", "destination_port")
# What orjson escapes or writes specially, and what it writes raw that an encoder might not.
SPECIAL = "".join(map(chr, range(0x20))) + '"\\/\x7f\x80\xe9\xff\u0100\u07ff\u0800\u2028\u2029\ufffd\uffff\U00010000\U0001f600\U0010ffff'  # fmt: skip


@pytest.fixture(scope="module")
def fast() -> Callable[..., bytes]:
    return compiled(MODULE).ecs_json


@pytest.mark.parametrize("newline", [False, True])
def test_compiled_bytes_equal_the_reference_on_every_corpus_event(fast, newline):
    events = parsed([case.line_bytes for case in load_cases()])
    assert len(events) > 100
    for e in events:
        assert fast(e, INGEST, newline) == ecs_json_reference(e, INGEST, newline), e.original


@pytest.mark.parametrize("path", sorted(REAL_NAMED.glob("*.log")), ids=lambda p: p.name)
def test_compiled_bytes_equal_the_reference_on_every_event_of_the_real_named_logs(fast, path):
    events = parsed(path.read_bytes().splitlines())
    assert events
    for e in events:
        assert fast(e, INGEST, newline=True) == ecs_json_reference(e, INGEST, newline=True), e.original


@pytest.mark.parametrize("bind", ["9.11", "9.18"])
def test_compiled_bytes_equal_the_reference_on_every_event_of_a_generated_log(fast, bind, tmp_path):
    events = generated_events(bind, tmp_path)
    assert len(events) > 1000
    for e in events:
        assert fast(e, INGEST) == ecs_json_reference(e, INGEST), e.original


_kind_and_reason = st.sampled_from(sorted(_ACTIONS)).flatmap(
    lambda kind: st.tuples(st.just(kind), st.sampled_from(sorted(hints_for(kind))))
)
# Any text, lone surrogates included (orjson refuses them: both encoders must raise alike).
_text = st.text(st.characters() | st.sampled_from(SPECIAL) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                max_size=40)  # fmt: skip
_number = st.none() | st.integers(0, 2**40) | st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=500, deadline=None)
@given(
    kind_and_reason=_kind_and_reason,
    texts=st.tuples(_text, _text, _text),
    optional=st.fixed_dictionaries(
        {}, optional={key: _text for key in TEXT_FIELDS} | {key: _number for key in NUMBER_FIELDS}
    ),
    timestamp_valid=st.booleans(),
    repeat_count=_number,
    newline=st.booleans(),
)
def test_compiled_outcome_equals_the_reference_whatever_fields_and_text(
    fast, kind_and_reason, texts, optional, timestamp_valid, repeat_count, newline
):
    (kind, reason), (message, original, reason_text) = kind_and_reason, texts
    e = Event(kind, reason, reason_text, message, original, timestamp_valid=timestamp_valid,
              repeat_count=repeat_count, **optional)  # fmt: skip
    assert outcome(fast, e, INGEST, newline) == outcome(ecs_json_reference, e, INGEST, newline)


@settings(max_examples=500, deadline=None)
@given(odd=st.dictionaries(st.sampled_from(FIELDS), ODD, min_size=1, max_size=4), ingest_time=ODD | st.just(INGEST))
def test_compiled_outcome_equals_the_reference_for_values_of_any_type_in_any_field(fast, odd, ingest_time):
    e = dataclasses.replace(client_event(), **odd)
    assert outcome(fast, e, ingest_time) == outcome(ecs_json_reference, e, ingest_time)


@pytest.mark.parametrize("char", SPECIAL, ids=lambda c: f"U+{ord(c):04X}")
def test_each_character_orjson_escapes_or_writes_raw_is_encoded_as_the_reference_does(fast, char):
    e = client_event(message=f"a{char}b", original=char * 9, qname=f"{char}.example")
    assert fast(e, INGEST) == ecs_json_reference(e, INGEST)


@pytest.mark.parametrize("value", [-(2**63) - 1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1, 2**64])
def test_integers_at_the_64_bit_edges_are_encoded_or_refused_as_the_reference_does(fast, value):
    e = client_event(client_port=value, offset=value)
    assert outcome(fast, e, INGEST) == outcome(ecs_json_reference, e, INGEST)


@pytest.mark.parametrize("newline", [False, True])
def test_rollup_event_is_encoded_as_the_reference_does(fast, newline):
    e = client_event(rollup_window=60.0, first_seen="2021-10-21T10:22:00Z", last_seen="2021-10-21T10:23:00Z",
                     repeat_count=7)  # fmt: skip
    assert fast(e, INGEST, newline=newline) == ecs_json_reference(e, INGEST, newline=newline)


@pytest.mark.parametrize("changes", [{"message_kind": "unknown_kind"}, {"reason": "unknown_reason"}])
def test_unknown_kind_or_reason_raises_the_references_key_error(fast, changes):
    e = client_event(**changes)
    assert outcome(fast, e, INGEST)[0] is KeyError
    assert outcome(fast, e, INGEST) == outcome(ecs_json_reference, e, INGEST)


def test_an_unset_slot_raises_the_references_attribute_error(fast):
    e = client_event()
    del e.qname
    assert outcome(fast, e, INGEST)[0] is AttributeError
    assert outcome(fast, e, INGEST) == outcome(ecs_json_reference, e, INGEST)


def test_a_subclass_of_event_is_encoded_as_the_reference_does(fast):
    e = overridden()
    assert b'"message":"overridden"' in fast(e, INGEST)
    assert fast(e, INGEST) == ecs_json_reference(e, INGEST)


def test_events_that_differ_only_in_reason_text_each_get_their_own_text(fast):
    events = [client_event(reason_text=f"would block {n}") for n in range(3000)]  # more than the C side keeps
    for e in events + events:
        assert fast(e, INGEST) == ecs_json_reference(e, INGEST)


def test_a_document_larger_than_the_buffer_kept_between_calls_is_encoded_as_the_reference_does(fast):
    e = client_event(original="x\t\u00e9\u2028" * 50_000, message="\x01" * 100_000)  # megabytes of escapes
    for _ in range(2):  # the buffer grows, is given back, and grows again
        assert fast(e, INGEST) == ecs_json_reference(e, INGEST)


def test_threads_encoding_at_once_each_get_their_own_documents(fast):
    events = [client_event(qname=f"q{n}.example", message="m" * n) for n in range(200)]
    expected = [ecs_json_reference(e, INGEST) for e in events]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: [fast(e, INGEST) for e in events], range(40)))
    finally:
        sys.setswitchinterval(interval)
    assert all(result == expected for result in results)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {"event": None, "ingest_time": INGEST}),
        ((None,), {"ingest_time": INGEST, "newline": True}),
        ((None, INGEST), {"newline": 1}),
        ((None, INGEST, True, 4), {}),
        ((None,), {}),
        ((None, INGEST), {"ingest_time": INGEST}),
        ((None, INGEST), {"indent": 2}),
    ],
)
def test_arguments_by_keyword_or_wrong_are_taken_as_the_reference_takes_them(fast, args, kwargs):
    call = [client_event() if arg is None else arg for arg in args]
    named = {key: client_event() if value is None else value for key, value in kwargs.items()}
    assert outcome(fast, *call, **named) == outcome(ecs_json_reference, *call, **named)


# Events down each path: the C one (plain, and with escapes), the reference's (a rollup, a u64), and two that raise.
LEAK_EVENTS = [
    {},
    {"message": 'tab\t"quote" \xe9 \u2028 \U0001f600', "ingested": INGEST, "timestamp": None},
    {"rollup_window": 60.0},
    {"pid": 2**64 - 1},
    {"qname": "\ud800"},
    {"message_kind": "unknown_kind"},
]


def test_encoding_keeps_every_reference_count(fast):
    events = [client_event(**changes) for changes in LEAK_EVENTS]
    repeat(fast, events, 2, INGEST, True)  # the memo and the reference's cache fill on the first rounds
    held = counted((*events, *(getattr(e, name) for e in events for name in FIELDS), *_shared.values()))
    before = [sys.getrefcount(value) for value in held]
    repeat(fast, events, 2000, INGEST, True)
    assert [sys.getrefcount(value) for value in held] == before


def test_encoding_keeps_memory_flat(fast):
    events = [client_event(**changes) for changes in LEAK_EVENTS]
    # 30,000 calls: a leaked document each would be about 30 MB.
    assert memory_growth(lambda rounds: repeat(fast, events, rounds, INGEST, True), 5000) < 100_000


@pytest.mark.parametrize("module", ["named_senderr.event", "named_senderr.engine.printing",
                                    "named_senderr.sinks.elasticsearch"])  # fmt: skip
def test_every_caller_of_ecs_json_gets_the_compiled_encoder_when_it_was_built(module):
    assert importlib.import_module(module).ecs_json is compiled(MODULE).ecs_json


def test_pure_python_env_gives_every_caller_the_reference():
    code = ("import named_senderr.event as e, named_senderr.engine.printing as p, named_senderr.sinks.elasticsearch as s;"
            "print(e.ecs_json is e.ecs_json_reference is p.ecs_json is s.ecs_json)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, PURE_PYTHON_ENV: "1"}, capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "True", done.stderr

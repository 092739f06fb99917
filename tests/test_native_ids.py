"""The C document ids are the reference's, for every event the corpus gives and for generated ones."""

from __future__ import annotations

import dataclasses
from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.event import Event
from named_senderr.normalize.timestamp import TimestampNormalizer
from named_senderr.parse.named import NamedLineParser
from named_senderr.sinks import ids
from tests.corpus import load_cases
from tests.native import compiled

CWD = "/var/log/named"
BASE = Event("send_failed", "would_block", "would block", "send failed", "client 192.0.2.1#53: send failed")


def c_id(event: Event, cwd: str = CWD) -> bytes:
    return compiled("named_senderr.sinks._ids").event_id_bytes(event, cwd)


def corpus_events() -> list[Event]:
    parser = NamedLineParser(TimestampNormalizer(UTC))
    events = [parser.parse_bytes(case.line_bytes) for case in load_cases()]
    return [event for event in events if isinstance(event, Event)]


def test_every_corpus_event_gets_the_references_id_with_and_without_a_file() -> None:
    events = corpus_events()
    assert len(events) > 200
    for number, event in enumerate(events):
        event.file, event.offset, event.host = ("named.log", number * 97, "ns1") if number % 2 else (None, None, None)
        assert c_id(event) == ids.python_event_id_bytes(event, CWD), event.original


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
awkward_texts = st.text(max_size=40)  # lone surrogates too: the reference escapes them


@settings(max_examples=3000, deadline=None)
@given(
    offset=st.one_of(st.none(), st.integers(0, 2**63 - 1), st.integers(2**63, 2**70), st.booleans()),
    timestamp=st.one_of(st.none(), st.just(""), texts, awkward_texts),
    host=st.one_of(st.none(), texts),
    file=st.one_of(st.none(), texts.filter(lambda t: "\0" not in t), st.just("./named.log")),
    original=st.one_of(texts, awkward_texts),
)
def test_generated_events_get_the_references_id(offset, timestamp, host, file, original) -> None:
    event = dataclasses.replace(BASE, offset=offset, timestamp=timestamp, host=host, file=file, original=original)
    try:
        expected: bytes | type[BaseException] = ids.python_event_id_bytes(event, CWD)
    except Exception as exc:  # a timestamp with a lone surrogate: both must refuse it the same way
        expected = type(exc)
    if isinstance(expected, bytes):
        assert c_id(event) == expected
    else:
        with pytest.raises(expected):
            c_id(event)


def test_the_sinks_use_the_c_ids_when_built() -> None:
    assert ids.event_id_bytes is compiled("named_senderr.sinks._ids").event_id_bytes

"""Every line of the shared corpus, as the parser's specification."""

from __future__ import annotations

import pytest

from named_senderr.engine.printing import run_parse
from named_senderr.event import Event
from named_senderr.parse.named import Rejection
from named_senderr.settings.parse import ParseConfig
from tests.corpus import OPTIONAL_KEYS, REQUIRED_KEYS, load_cases
from tests.parsing import make_normalizer, make_parser

CASES = load_cases()
POSITIVES = [c for c in CASES if c.expect is not None]
NEGATIVES = [c for c in CASES if c.expect is None]


def test_corpus_has_positives_near_misses_and_hostile_lines():
    assert len(POSITIVES) > 150
    assert len(NEGATIVES) > 40
    assert any(c.era.startswith("hostile") for c in CASES)


@pytest.mark.parametrize("case", POSITIVES, ids=[c.id for c in POSITIVES])
def test_positive_line_yields_the_expected_fields(case):
    event = make_parser().parse_bytes(case.line_bytes)
    assert isinstance(event, Event), event
    expected = {key: case.expect[key] for key in REQUIRED_KEYS}
    expected |= {key: case.expect[key] for key in OPTIONAL_KEYS if key in case.expect}
    actual = {key: getattr(event, key) for key in expected}
    assert actual == expected


@pytest.mark.parametrize("case", POSITIVES, ids=[c.id for c in POSITIVES])
def test_positive_line_carries_its_logged_time_as_utc_timestamp(case):
    event = make_parser().parse_bytes(case.line_bytes)
    log_time = case.expect.get("log_time")
    if case.expect.get("timestamp_valid") is False:
        assert event.timestamp is None and event.timestamp_valid is False
    elif log_time is None:
        assert event.timestamp is None
    else:
        assert event.timestamp == make_normalizer().to_rfc3339(log_time)


@pytest.mark.parametrize("case", NEGATIVES, ids=[c.id for c in NEGATIVES])
def test_near_miss_or_hostile_line_gives_no_event(case):
    result = make_parser().parse_bytes(case.line_bytes)
    assert not isinstance(result, Event)


@pytest.mark.parametrize("case", [c for c in NEGATIVES if c.era.startswith("hostile")], ids=lambda c: c.id)
def test_hostile_reject_is_a_rejection_with_a_cause(case):
    result = make_parser().parse_bytes(case.line_bytes)
    assert isinstance(result, Rejection)
    assert result.reason and result.detail


def test_whole_corpus_through_the_file_reader_gives_exactly_the_positives(tmp_path):
    """journalctl -o json output is a file of its own; everything else shares one file."""
    text_log, json_log = tmp_path / "corpus.log", tmp_path / "journal.json"
    text_log.write_bytes(b"\n".join(c.line_bytes for c in CASES if not c.line.startswith("{")) + b"\n")
    json_log.write_bytes(b"\n".join(c.line_bytes for c in CASES if c.line.startswith("{")) + b"\n")
    out = tmp_path / "events.ndjson"
    with out.open("wb") as stream:
        config = ParseConfig(inputs=(str(text_log), str(json_log)), format="flat", timezone="UTC")
        stats = run_parse(config, stream, warn=print)
    assert stats.lines == len(CASES)
    assert stats.events == len(POSITIVES)
    assert sorted(stats.events_by_reason.elements()) == sorted(c.expect["reason"] for c in POSITIVES)

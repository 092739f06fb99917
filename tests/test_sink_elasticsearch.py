"""The bulk sink: deterministic ids, the NDJSON it sends, and the pure classification of answers."""

from __future__ import annotations

import os

import orjson
import pytest

from named_senderr.event import Event
from named_senderr.settings.loading import sink_from_url
from named_senderr.sinks.elasticsearch import BulkSink, classify_bulk, error_reason
from named_senderr.sinks.http import Reply
from named_senderr.sinks.ids import event_id
from tests.faults import bulk_answer

ITEMS = [b"a", b"b", b"c"]


def event(**changes) -> Event:
    fields = {
        "message_kind": "send_failed",
        "reason": "would_block",
        "reason_text": "no pending connections",
        "message": "client @0x1 198.51.100.7#53 (example.com): send failed: no pending connections",
        "original": "21-Nov-2026 04:48:37.067 security: debug 3: client ... send failed: no pending connections",
        "timestamp": "2026-11-21T04:48:37.067Z",
        "client_ip": "198.51.100.7",
        "client_port": 53,
        "file": "named.log",
        "offset": 120,
    }
    return Event(**{**fields, **changes})


def bulk(statuses: list[int], reason: str = "rejected") -> Reply:
    answer = bulk_answer(statuses, reason)
    return Reply(answer.status, answer.body)


def test_id_is_the_same_for_the_same_line_of_the_same_file() -> None:
    assert event_id(event(), "/var/log") == event_id(event(), "/var/log")


def test_id_does_not_depend_on_how_the_path_is_spelt() -> None:
    assert event_id(event(file="./named.log"), "/var/log") == event_id(event(file="/var/log/named.log"), "/")


def test_id_differs_for_a_repeated_line_at_another_offset() -> None:
    assert event_id(event(offset=120), "/") != event_id(event(offset=240), "/")


def test_id_differs_for_another_host() -> None:
    assert event_id(event(host="ns1"), "/") != event_id(event(host="ns2"), "/")


def test_id_of_an_event_with_an_offset_is_the_one_earlier_versions_gave() -> None:
    """Pinned: a replay of files shipped by an earlier version must find its documents (409), not add new ones."""
    assert event_id(event(), "/") == "8dLmLZ76wvZi7RtZn_uaJVEnh6KeHiRog_ksxkQjKJw"


def test_id_without_an_offset_differs_for_the_same_line_at_another_time() -> None:
    """A Forward or syslog event has no offset: its time tells two identical lines apart."""
    first = event(file=None, offset=None, timestamp="2026-11-21T04:48:37.067Z")
    assert event_id(first, "/") != event_id(event(file=None, offset=None, timestamp="2026-11-21T04:48:38.067Z"), "/")
    assert event_id(first, "/") == event_id(event(file=None, offset=None, timestamp="2026-11-21T04:48:37.067Z"), "/")


def test_id_is_43_base64url_characters() -> None:
    ident = event_id(event(), "/")
    assert len(ident) == 43 and set(ident) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_encode_is_a_create_action_with_the_id_and_the_ecs_document() -> None:
    sink = BulkSink(sink_from_url("elasticsearch+http://h:9200/idx", {}, "t", None), "2026-11-21T05:00:00.000Z")
    item, size = sink.encode(event())
    action, document = item.splitlines()
    assert orjson.loads(action) == {"create": {"_id": event_id(event(), os.getcwd())}}
    assert orjson.loads(document)["client"]["ip"] == "198.51.100.7"
    assert size == len(item) and item.endswith(b"\n")


def test_event_without_time_gets_the_ingest_time() -> None:
    sink = BulkSink(sink_from_url("elasticsearch+http://h:9200/idx", {}, "t", None), "2026-11-21T05:00:00.000Z")
    item, _ = sink.encode(event(timestamp=None))
    assert orjson.loads(item.splitlines()[1])["@timestamp"] == "2026-11-21T05:00:00.000Z"


def test_all_created_is_all_delivered() -> None:
    outcome = classify_bulk(Reply(200, b'{"errors":false}'), ITEMS)
    assert (outcome.delivered, outcome.retry, outcome.dead) == (3, [], [])


def test_409_on_create_counts_as_already_stored() -> None:
    outcome = classify_bulk(bulk([201, 409, 409]), ITEMS)
    assert (outcome.delivered, outcome.duplicates, outcome.dead) == (1, 2, [])


def test_only_items_rejected_with_429_or_5xx_are_retried() -> None:
    outcome = classify_bulk(bulk([201, 429, 503]), ITEMS)
    assert outcome.retry == [b"b", b"c"] and outcome.delivered == 1


def test_mapping_error_item_is_dead_with_the_servers_reason() -> None:
    outcome = classify_bulk(bulk([201, 400, 201], "failed to parse field [client.ip] of type [ip]"), ITEMS)
    assert outcome.dead == [(b"b", "400: document_parsing_exception: failed to parse field [client.ip] of type [ip]")]


def test_413_asks_for_a_split() -> None:
    assert classify_bulk(Reply(413, b""), ITEMS).too_large


def test_whole_request_429_retries_all_and_keeps_retry_after() -> None:
    outcome = classify_bulk(Reply(429, b'{"error":{"type":"es_rejected_execution_exception"}}', 7.0), ITEMS)
    assert outcome.retry == ITEMS and outcome.retry_after == 7.0


def test_503_retries_all() -> None:
    assert classify_bulk(Reply(503, b"unavailable"), ITEMS).retry == ITEMS


def test_connection_failure_retries_all() -> None:
    outcome = classify_bulk(Reply(0, error="cannot connect: refused"), ITEMS)
    assert outcome.retry == ITEMS and outcome.error == "cannot connect: refused"


def test_401_stops_the_sink_with_the_fix() -> None:
    outcome = classify_bulk(
        Reply(401, b'{"error":{"type":"security_exception","reason":"unable to authenticate"}}'), ITEMS
    )
    assert "unable to authenticate" in outcome.fatal and "password_env" in outcome.fatal


def test_404_stops_the_sink() -> None:
    assert "no _bulk API" in classify_bulk(Reply(404, b"not found"), ITEMS).fatal


def test_whole_request_400_from_a_proxy_stops_the_sink_and_dead_letters_nothing() -> None:
    outcome = classify_bulk(Reply(400, b"<html><center>No required SSL certificate was sent</center></html>"), ITEMS)
    assert "No required SSL certificate was sent" in outcome.fatal and outcome.dead == []


def test_whole_request_400_is_dead() -> None:
    outcome = classify_bulk(Reply(400, b'{"error":{"type":"parse_exception","reason":"bad"}}'), ITEMS)
    assert [reason for _, reason in outcome.dead] == ["400: parse_exception: bad"] * 3


def test_answer_that_is_not_bulk_json_stops_the_sink() -> None:
    assert "not bulk JSON" in classify_bulk(Reply(200, b"<html>proxy</html>"), ITEMS).fatal


def test_item_count_mismatch_stops_the_sink() -> None:
    assert "answered 2 items for 3 sent" in classify_bulk(bulk([201, 400]), ITEMS).fatal


def test_error_reason_includes_the_cause() -> None:
    body = b'{"error":{"type":"a","reason":"b","caused_by":{"type":"c","reason":"d"}}}'
    assert error_reason(Reply(400, body)) == "a: b (caused by c: d)"


def test_dead_record_keeps_action_and_document_as_json() -> None:
    sink = BulkSink(sink_from_url("elasticsearch+http://h:9200/idx", {}, "t", None), "2026-11-21T05:00:00.000Z")
    item, _ = sink.encode(event())
    record = orjson.loads(orjson.dumps(sink.dead_record(item)))
    assert record["document"]["event"]["reason"] == "would_block" and "create" in record["action"]


# Computed with the code of main at 7138c54 (ids.py before the id's prefix was cached): run event_id on each
# case with that checkout's package and printed the result. The fast path must hash the very same bytes.
RECORDED_IDS = [
    ("offset_absolute", {"file": "/var/log/named.log", "offset": 0, "host": "ns1"}, "/",
     "NkER-A_unlOVntYd1UOpJOyAe-XTTAVb9xVuW12mFD0"),
    ("offset_relative", {"file": "./logs/../named.log", "offset": 987654321, "host": None}, "/srv/bind",
     "sEnZjcMj29AlmOtW72VVqivEksMLKS5KnqGz0RA_nKA"),
    ("no_offset_time", {"file": None, "offset": None, "host": "ns2", "timestamp": "2026-11-21T04:48:37.067Z"}, "/",
     "VKrBUegOD9sKAPH08GoSQQL9g4i1TMbMlPsN1IBx69c"),
    ("no_offset_no_time", {"file": None, "offset": None, "host": None, "timestamp": None}, "/",
     "uti-5Gv6IAX4H_Tuog9A9ylJKEtyknV3gZ7OnXWJJ5U"),
    ("file_no_offset", {"file": "named.log", "offset": None, "timestamp": "2026-01-01T00:00:00.000Z"}, "/x",
     "WipthI1_6engOygV-7mUCLn_AjANT5QEA_aOjISXbnY"),
    ("undecodable", {"original": "21-Nov-2026 \udcff\udcfe send failed \u00e9\u4e2d", "file": "n\udce9.log",
                     "offset": 5, "host": "h\u00e9"}, "/", "e-N4pVkUhDDA5Td5UERJMRlek5VqAM3MbsRR1VPa4C0"),
    ("empty_host", {"host": "", "offset": 7}, "/", "-IuDiBrVihL9G8WMfIc_Eli0_xDkUXByKQwPi-xCiIA"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "cwd", "recorded"), [case[1:] for case in RECORDED_IDS],
                         ids=[case[0] for case in RECORDED_IDS])  # fmt: skip
def test_id_is_the_one_recorded_before_the_fast_path(changes: dict, cwd: str, recorded: str) -> None:
    """A replay after an upgrade must find every document it stored before (409), so not one byte may change."""
    assert event_id(event(**changes), cwd) == recorded


def test_encoded_action_carries_the_same_id_as_event_id() -> None:
    sink = BulkSink(sink_from_url("elasticsearch+http://h:9200/idx", {}, "t", None), "2026-11-21T05:00:00.000Z")
    item, _ = sink.encode(event(file="/var/log/named.log", offset=0, host="ns1"))
    assert orjson.loads(item.splitlines()[0])["create"]["_id"] == "NkER-A_unlOVntYd1UOpJOyAe-XTTAVb9xVuW12mFD0"

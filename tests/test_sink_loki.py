"""The Loki sink: bounded labels, structured metadata, sorted streams, and the pure classification."""

from __future__ import annotations

import orjson

from named_senderr.normalize.timestamp import to_epoch_ns as to_ns
from named_senderr.settings.loading import sink_from_url
from named_senderr.sinks.http import Reply
from named_senderr.sinks.loki import LokiSink, classify_push, push_body
from tests.test_sink_elasticsearch import event

INGEST = "2026-11-21T05:00:00.000Z"
ITEMS = ["a", "b"]


def sink(query: str = "") -> LokiSink:
    return LokiSink(sink_from_url(f"loki+http://h:3100{query}", {}, "t", None), INGEST)


def pushed(items: list) -> list[dict]:
    return orjson.loads(push_body(items, ("job", "host", "reason", "message_kind"), "named-senderr"))["streams"]


def test_labels_are_job_host_reason_and_kind() -> None:
    item, _ = sink().encode(event(host="ns1"))
    stream = pushed([item])[0]["stream"]
    assert stream == {"job": "named-senderr", "host": "ns1", "reason": "would_block", "message_kind": "send_failed"}


def test_absent_label_value_is_left_out() -> None:
    item, _ = sink().encode(event(host=None))
    assert "host" not in pushed([item])[0]["stream"]


def test_client_fields_are_structured_metadata() -> None:
    item, _ = sink().encode(event(qname="example.com", view="external"))
    metadata = pushed([item])[0]["values"][0][2]
    assert metadata == {"client_ip": "198.51.100.7", "client_port": "53", "qname": "example.com", "view": "external"}


def test_structured_metadata_can_be_turned_off_for_loki_2() -> None:
    item, _ = sink("?structured_metadata=false").encode(event())
    assert len(pushed([item])[0]["values"][0]) == 2


def test_line_is_the_flat_record() -> None:
    item, _ = sink().encode(event())
    line = orjson.loads(pushed([item])[0]["values"][0][1])
    assert line["client_ip"] == "198.51.100.7" and line["offset"] == 120 and line["reason"] == "would_block"


def test_entry_time_is_the_events_time_in_nanoseconds() -> None:
    item, _ = sink().encode(event(timestamp="2026-11-21T04:48:37.067Z"))
    assert pushed([item])[0]["values"][0][0] == "1795236517067000000"


def test_event_without_time_gets_the_ingest_time() -> None:
    item, _ = sink().encode(event(timestamp=None))
    assert int(pushed([item])[0]["values"][0][0]) == to_ns(INGEST)


def test_entries_are_sorted_by_time_within_each_stream() -> None:
    loki = sink()
    late, _ = loki.encode(event(timestamp="2026-11-21T04:48:39.000Z"))
    early, _ = loki.encode(event(timestamp="2026-11-21T04:48:38.000Z"))
    other, _ = loki.encode(event(timestamp="2026-11-21T04:48:37.000Z", reason="host_unreachable"))
    streams = pushed([late, other, early])
    assert [len(s["values"]) for s in streams] == [2, 1]
    assert [v[0] for v in streams[0]["values"]] == sorted(v[0] for v in streams[0]["values"])


def test_to_ns_reads_microseconds_and_no_fraction() -> None:
    assert to_ns("2026-11-21T04:48:37.000001Z") - to_ns("2026-11-21T04:48:37Z") == 1000


def test_to_ns_reads_an_offset_form() -> None:
    assert to_ns("2026-11-21T05:48:37.5+01:00") == to_ns("2026-11-21T04:48:37.500Z")


def test_204_is_delivered() -> None:
    assert classify_push(Reply(204), ITEMS).delivered == 2


def test_429_retries_all_with_retry_after() -> None:
    outcome = classify_push(Reply(429, b"Ingestion rate limit exceeded", 3.0), ITEMS)
    assert outcome.retry == ITEMS and outcome.retry_after == 3.0


def test_500_retries_all() -> None:
    assert classify_push(Reply(500, b"internal"), ITEMS).retry == ITEMS


def test_400_is_dead_with_lokis_reason() -> None:
    outcome = classify_push(Reply(400, b"entry for stream '{job=\"x\"}' has timestamp too old"), ITEMS)
    assert outcome.dead[0] == ("a", "400: entry for stream '{job=\"x\"}' has timestamp too old")


def test_missing_tenant_stops_the_sink_with_the_fix() -> None:
    assert "set tenant" in classify_push(Reply(401, b"no org id"), ITEMS).fatal


def test_413_asks_for_a_split() -> None:
    assert classify_push(Reply(413, b"too large"), ITEMS).too_large


# VictoriaLogs v1.52.1's own words (answers of the real server, tested end to end in test_ship_servers.py).
def test_victorialogs_400_for_a_request_over_its_limit_asks_for_a_split() -> None:
    reply = Reply(400, b"cannot read Loki json data: too big data size exceeding -loki.maxRequestSize=2000 bytes")
    assert classify_push(reply, ITEMS).too_large


def test_victorialogs_400_for_a_path_without_insert_stops_the_sink_with_the_fix() -> None:
    outcome = classify_push(Reply(400, b'unsupported path requested: "/loki/api/v1/push"'), ITEMS)
    assert "loki+http://HOST:9428/insert" in outcome.fatal and not outcome.dead


def test_victorialogs_400_for_a_tenant_it_cannot_read_stops_the_sink_with_the_fix() -> None:
    reason = b'cannot parse common params from request: cannot parse accountID from "dns-team"'
    outcome = classify_push(Reply(400, reason), ITEMS)
    assert "ACCOUNT:PROJECT" in outcome.fatal and not outcome.dead


def test_connection_failure_retries_all() -> None:
    assert classify_push(Reply(0, error="connection cut"), ITEMS).retry == ITEMS


def test_dead_record_keeps_labels_time_and_line() -> None:
    loki = sink()
    item, _ = loki.encode(event())
    record = orjson.loads(orjson.dumps(loki.dead_record(item)))
    assert record["labels"]["reason"] == "would_block" and record["line"]["client_ip"] == "198.51.100.7"

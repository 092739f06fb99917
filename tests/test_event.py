"""The two renderings of an Event: ECS for Elasticsearch, flat for stdout/Loki/Fluent."""

from __future__ import annotations

import dataclasses

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.event import _ACTIONS, ECS_VERSION, Event, ecs_json, to_ecs, to_flat
from tests.corpus import load_cases
from tests.parsing import make_parser

LINE = (
    "Feb 02 02:02:02 ns1 named[2222]: 21-Oct-2021 10:22:33.123 client: warning: "
    "client @0x7f8e3001c9a0 192.0.2.53#5300/key k1 (example.com): view ext: error sending response: would block"
)
FLAT_KEYS = [
    "timestamp",
    "reason",
    "reason_text",
    "hint",
    "client_ip",
    "client_port",
    "scope",
    "qname",
    "view",
    "signer",
    "client_ptr",
    "message_kind",
    "repeat_count",
    "host",
    "program",
    "pid",
    "category",
    "severity",
    "file",
    "offset",
    "message",
    "zone",
    "zone_class",
    "destination_ip",
    "destination_port",
]


def event():
    e = make_parser().parse(LINE)
    e.file, e.offset = "/var/log/named/named.log", 4096
    return e


def test_ecs_document_has_every_field_the_design_names():
    doc = to_ecs(event(), "2026-01-01T00:00:00.000Z")
    assert doc["@timestamp"] == "2026-02-02T02:02:02Z"
    assert doc["message"].startswith("client @0x7f8e3001c9a0") and doc["event"]["original"] == LINE
    assert doc["event"] | {"original": None} == {
        "original": None,
        "kind": "event",
        "category": ["network"],
        "type": ["connection", "error"],
        "outcome": "failure",
        "action": "error-sending-response",
        "dataset": "bind.send_error",
        "module": "bind",
        "reason": "would_block",
    }
    assert doc["error"] == {"message": "would block"}
    assert doc["client"] == {"ip": "192.0.2.53", "port": 5300, "address": "192.0.2.53"}
    assert doc["related"] == {"ip": ["192.0.2.53"]}
    assert doc["dns"] == {"question": {"name": "example.com"}}
    assert doc["host"] == {"name": "ns1"}
    assert doc["process"] == {"name": "named", "pid": 2222}
    assert doc["log"] == {
        "level": "warning",
        "logger": "client",
        "file": {"path": "/var/log/named/named.log"},
        "offset": 4096,
    }
    assert doc["ecs"] == {"version": ECS_VERSION}
    assert doc["bind"]["view"] == "ext" and doc["bind"]["signer"] == "k1"
    assert doc["bind"]["client_ptr"] == "0x7f8e3001c9a0" and doc["bind"]["message_kind"] == "error_sending_response"
    assert "send buffer" in doc["bind"]["hint"]


def test_ecs_document_without_a_logged_time_uses_ingest_time_and_says_so():
    e = make_parser().parse("client 192.0.2.17#4218: error sending response: unexpected error")
    doc = to_ecs(e, "2026-01-01T00:00:00.000Z")
    assert doc["@timestamp"] == "2026-01-01T00:00:00.000Z"
    assert doc["bind"]["timestamp_valid"] is False


def test_udp_send_failed_has_no_client_fields():
    e = make_parser().parse(
        "21-Oct-2024 10:22:33.125 general: error: Sending UDP messages failed: no pending connections"
    )
    doc = to_ecs(e, "x")
    assert "client" not in doc and "related" not in doc
    assert doc["event"]["action"] == "udp-send-failed" and doc["event"]["reason"] == "would_block"


def test_flat_record_has_the_same_keys_on_every_event():
    assert list(to_flat(event())) == FLAT_KEYS
    udp = make_parser().parse(
        "21-Oct-2024 10:22:33.125 general: error: Sending UDP messages failed: no pending connections"
    )
    assert list(to_flat(udp)) == FLAT_KEYS
    assert to_flat(udp)["client_ip"] is None


def test_flat_record_values():
    flat = to_flat(event())
    assert (flat["client_ip"], flat["client_port"], flat["qname"], flat["view"]) == (
        "192.0.2.53",
        5300,
        "example.com",
        "ext",
    )
    assert (flat["host"], flat["program"], flat["pid"], flat["offset"]) == ("ns1", "named", 2222, 4096)


TRANSFER = (
    "21-Oct-2019 10:22:33.127 xfer-out: error: client @0x7f5e2c01b4f0 192.0.2.7#41234 (example.com): "
    "transfer of 'example.com/IN': send: connection reset"
)


def test_zone_transfer_event_carries_its_zone_and_class_under_bind_in_ecs():
    doc = to_ecs(make_parser().parse(TRANSFER), "2026-01-01T00:00:00.000Z")
    assert (doc["bind"]["zone"], doc["bind"]["zone_class"]) == ("example.com", "IN")
    assert doc["event"]["action"] == "transfer-send-failed"
    assert doc["dns"] == {"question": {"name": "example.com"}}


def test_zone_transfer_event_carries_its_zone_and_class_in_the_flat_record():
    flat = to_flat(make_parser().parse(TRANSFER))
    assert (flat["zone"], flat["zone_class"], flat["message_kind"]) == ("example.com", "IN", "transfer_send_failed")


def test_truncated_answer_is_its_own_action_with_the_truncation_hint():
    line = "client @0x7f1a2c0b3d40 192.0.2.9#33442 (big.example.com): send exceeded maximum size: truncating"
    doc = to_ecs(make_parser().parse(line), "2026-01-01T00:00:00.000Z")
    assert (doc["event"]["action"], doc["event"]["reason"]) == ("send-exceeded-maximum-size", "truncated")
    assert "TC=1" in doc["bind"]["hint"] and "zone" not in doc["bind"]


def test_flat_record_keeps_the_zone_index_of_a_scoped_address_as_ecs_does():
    scoped = make_parser().parse(
        "21-Oct-2021 10:22:33.123 client @0x7f8e fe80::268c%1#5300 (example.com): error sending response: would block"
    )
    assert (to_flat(scoped)["client_ip"], to_flat(scoped)["scope"]) == ("fe80::268c", "1")
    assert to_ecs(scoped, "2021-10-21T10:22:33.123Z")["bind"]["scope"] == "1"


def test_encoded_ecs_line_is_byte_for_byte_the_ecs_document_of_every_corpus_event():
    parser = make_parser()
    events = [e for case in load_cases() if isinstance(e := parser.parse_bytes(case.line_bytes), Event)]
    assert len(events) > 100
    for e in events:
        assert ecs_json(e, "2026-01-01T00:00:00.000Z") == orjson.dumps(to_ecs(e, "2026-01-01T00:00:00.000Z"))


_text = st.none() | st.text(st.characters(codec="utf-8"), max_size=12)
_number = st.none() | st.integers(0, 2**40)
TEXT_FIELDS = ("timestamp", "client_ip", "scope", "client_ptr", "qname", "view", "signer", "netmgr_ptr", "zone",
               "zone_class", "host", "program", "category", "severity", "syslog_severity", "container", "file",
               "ingested", "destination_ip")  # fmt: skip
NUMBER_FIELDS = ("client_port", "pid", "priority", "offset", "destination_port")


@settings(max_examples=300, deadline=None)
@given(
    optional=st.fixed_dictionaries({key: _text for key in TEXT_FIELDS} | {key: _number for key in NUMBER_FIELDS}),
    timestamp_valid=st.booleans(),
    repeat_count=st.integers(1, 10**6),
    texts=st.tuples(*[st.text(st.characters(codec="utf-8"), max_size=20)] * 3),
    newline=st.booleans(),
    kind=st.sampled_from(sorted(_ACTIONS)),
)
def test_encoded_ecs_line_equals_the_ecs_document_whatever_fields_are_set(
    optional: dict, timestamp_valid: bool, repeat_count: int, texts: tuple[str, str, str], newline: bool, kind: str
) -> None:
    message, original, reason_text = texts
    e = Event(kind, "would_block", reason_text, message, original, timestamp_valid=timestamp_valid,
              repeat_count=repeat_count, **optional)  # fmt: skip
    expected = orjson.dumps(to_ecs(e, "INGEST"), option=orjson.OPT_APPEND_NEWLINE if newline else None)
    assert ecs_json(e, "INGEST", newline=newline) == expected


INTERNAL_SEND = "02-Feb-2023 11:22:33.444 general: error: internal_send: 192.0.2.53#53: Network is down"


def test_internal_send_line_puts_its_address_under_destination_not_client():
    doc = to_ecs(make_parser().parse(INTERNAL_SEND), "x")
    assert doc["destination"] == {"ip": "192.0.2.53", "port": 53} and doc["related"] == {"ip": ["192.0.2.53"]}
    assert "client" not in doc
    assert (doc["event"]["action"], doc["event"]["reason"]) == ("internal-send-failed", "network_down")


def test_internal_send_hint_says_it_is_the_errno_behind_the_failure_beside_it():
    hint_text = to_ecs(make_parser().parse(INTERNAL_SEND), "x")["bind"]["hint"]
    assert hint_text.startswith("the errno behind the send failure") and "unexpected error" in hint_text
    assert "interface is down" in hint_text  # and then the reason's own advice


def test_flat_record_of_an_internal_send_line_carries_the_destination():
    flat = to_flat(make_parser().parse(INTERNAL_SEND))
    assert (flat["destination_ip"], flat["destination_port"], flat["client_ip"]) == ("192.0.2.53", 53, None)


def test_encoded_ecs_line_of_a_rollup_is_its_ecs_document():
    e = dataclasses.replace(event(), rollup_window=60.0, first_seen="a", last_seen="b", repeat_count=7)
    assert ecs_json(e, "INGEST") == orjson.dumps(to_ecs(e, "INGEST"))

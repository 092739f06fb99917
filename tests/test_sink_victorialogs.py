"""The VictoriaLogs sink: the lines and query args it sends, its id questions, and the pure classification."""

from __future__ import annotations

import orjson
import pytest

from named_senderr.errors import ConfigError
from named_senderr.normalize.timestamp import to_epoch_ns
from named_senderr.settings.loading import sink_from_url
from named_senderr.sinks.http import Reply
from named_senderr.sinks.victorialogs import (
    MAX_QUERY,
    VictoriaLogsSink,
    classify_insert,
    id_queries,
    id_window,
    outside,
    selector,
    tenant_headers,
)
from named_senderr.sinks.victorialogs_limits import DAY_NS, duration_ns, parse_flags
from tests.servers import free_port
from tests.test_sink_elasticsearch import event

INGEST = "2026-11-21T05:00:00.000Z"
ITEMS = ["a", "b"]


def config(query: str = ""):
    return sink_from_url(f"victorialogs+http://h:9428{query}", {}, "t", None)


def sink(query: str = "", ingest: str = INGEST) -> VictoriaLogsSink:
    """On a port nothing listens on: its question for the server's flags is refused at once."""
    return VictoriaLogsSink(sink_from_url(f"victorialogs+http://127.0.0.1:{free_port()}{query}", {}, "t", None), ingest)


def line(query: str = "", **changes) -> dict:
    item, _ = sink(query).encode(event(**changes))
    return orjson.loads(item[2])


def test_entry_is_the_ecs_document_with_job_and_event_id() -> None:
    record = line(host="ns1")
    assert record["@timestamp"] == "2026-11-21T04:48:37.067Z" and record["client"]["ip"] == "198.51.100.7"
    assert record["job"] == "named-senderr" and len(record["event"]["id"]) == 43


def test_flat_format_sends_the_flat_record_with_event_id() -> None:
    record = line("?format=flat&job=dns")
    assert record["client_ip"] == "198.51.100.7" and record["job"] == "dns" and len(record["event_id"]) == 43


def test_each_entry_is_one_line() -> None:
    item, size = sink().encode(event())
    assert item[2].endswith(b"\n") and item[2].count(b"\n") == 1 and size == len(item[2])


def test_query_args_name_the_message_the_events_time_and_ecs_stream_fields() -> None:
    assert sink().params == {
        "_msg_field": "message",
        "_time_field": "@timestamp",
        "_stream_fields": "job,host.name,event.reason,bind.message_kind",
    }


def test_flat_query_args_use_the_flat_names() -> None:
    params = sink("?format=flat&stream_fields=job,host,severity").params
    assert params["_time_field"] == "timestamp" and params["_stream_fields"] == "job,host,severity"


def test_item_carries_the_events_time_in_nanoseconds() -> None:
    item, _ = sink().encode(event(timestamp="2026-11-21T04:48:37.067Z"))
    assert item[1] == to_epoch_ns("2026-11-21T04:48:37.067Z")


def test_event_without_time_is_stored_at_the_ingest_time_and_marked_so() -> None:
    item, _ = sink().encode(event(timestamp=None))
    assert item[1] is None and orjson.loads(item[2])["@timestamp"] == INGEST


def test_the_same_line_gets_the_same_id_in_every_run() -> None:
    first, _ = sink().encode(event())
    again, _ = sink(ingest="2027-01-01T00:00:00.000Z").encode(event())
    assert first[0] == again[0]


def test_tenant_is_sent_as_account_and_project_headers() -> None:
    assert tenant_headers("12:34") == {"AccountID": "12", "ProjectID": "34"}
    assert tenant_headers("12") == {"AccountID": "12", "ProjectID": "0"} and tenant_headers(None) == {}


@pytest.mark.parametrize("field", ["client_ip", "client_port", "qname", "view", "offset"])
def test_unbounded_stream_field_is_refused_naming_it_and_the_fix(field: str) -> None:
    with pytest.raises(ConfigError, match=f"stream field '{field}' is unbounded.*remove it from stream_fields"):
        config(f"?stream_fields=job,{field}")


def test_unknown_stream_field_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown stream field 'colour'; choose from"):
        config("?stream_fields=job,colour")


@pytest.mark.parametrize("tenant", ["dns", "12:x", "4294967296", "-1"])
def test_tenant_that_is_not_account_and_project_numbers_is_refused(tenant: str) -> None:
    with pytest.raises(ConfigError, match=f"tenant '{tenant}' is not a VictoriaLogs tenant; give ACCOUNT"):
        config(f"?tenant={tenant}")


def test_url_may_end_with_the_insert_path() -> None:
    assert config().url == "http://h:9428"
    assert sink_from_url("victorialogs+https://h/vl/insert/jsonline", {}, "t", None).url == "https://h/vl"


def test_loki_keys_are_refused_for_victorialogs() -> None:
    with pytest.raises(ConfigError, match="labels does not apply to victorialogs sinks"):
        config("?labels=job")


def test_selector_is_a_stream_filter_when_job_is_a_stream_field() -> None:
    assert selector(config("?job=dns")) == '{job="dns"}'
    assert selector(config("?job=dns&stream_fields=host")) == 'job:="dns"'


def test_id_queries_ask_for_every_id_once_within_the_query_length_limit() -> None:
    ids = [f"{n:043d}" for n in range(1000)]
    queries = id_queries('{job="x"}', "event.id", ids)
    asked = [part.strip('"') for q in queries for part in q.split(":in(")[1].split(")")[0].split(",")]
    assert len(queries) > 1 and all(len(q) <= MAX_QUERY for q in queries) and asked == ids
    assert queries[0].startswith('{job="x"} event.id:in("') and queries[0].endswith(") | uniq by (event.id)")


def test_id_window_spans_the_items_times_in_seconds() -> None:
    items = [("a", 1_795_236_517_067_000_000, b""), ("b", 1_795_236_519_000_000_001, b"")]
    assert id_window(items, 0) == (1_795_236_517, 1_795_236_520)


def test_id_window_reaches_back_to_the_start_and_up_to_now_for_an_item_without_time() -> None:
    items = [("a", 1_795_236_517_067_000_000, b""), ("b", None, b"")]
    assert id_window(items, 1_800_000_000_000_000_000) == (0, 1_800_003_600)


def test_dead_record_keeps_the_id_and_the_document() -> None:
    victorialogs = sink()
    item, _ = victorialogs.encode(event())
    record = orjson.loads(orjson.dumps(victorialogs.dead_record(item)))
    assert record["event_id"] == item[0] and record["document"]["client"]["ip"] == "198.51.100.7"


def test_200_is_delivered() -> None:
    assert classify_insert(Reply(200), ITEMS).delivered == 2


def test_429_read_only_storage_retries_all_with_retry_after() -> None:
    outcome = classify_insert(Reply(429, b"cannot add rows into storage in read-only mode", 2.0), ITEMS)
    assert outcome.retry == ITEMS and outcome.retry_after == 2.0 and "read-only" in outcome.error


def test_503_retries_all() -> None:
    assert classify_insert(Reply(503, b"cannot process insert request"), ITEMS).retry == ITEMS


def test_400_for_every_line_unreadable_is_dead_with_the_servers_reason() -> None:
    reason = b'cannot process jsonline request; error: cannot parse timestamp from field "@timestamp"'
    outcome = classify_insert(Reply(400, reason), ITEMS)
    assert outcome.dead[0] == ("a", "400: " + reason.decode()) and not outcome.fatal


def test_400_for_the_parameters_stops_the_sink_without_dead_lettering() -> None:
    outcome = classify_insert(Reply(400, b'cannot parse AccountID from "x"'), ITEMS)
    assert "check tenant and stream_fields" in outcome.fatal and outcome.dead == []


def test_401_stops_the_sink_naming_the_credentials() -> None:
    assert "password_env" in classify_insert(Reply(401, b"Unauthorized"), ITEMS).fatal


def test_404_stops_the_sink_naming_the_path() -> None:
    assert "/insert/jsonline" in classify_insert(Reply(404, b"unsupported path"), ITEMS).fatal


def test_413_from_a_proxy_asks_for_a_split() -> None:
    assert classify_insert(Reply(413, b"too large"), ITEMS).too_large


def test_no_answer_retries_after_asking_what_was_stored() -> None:
    outcome = classify_insert(Reply(0, error="connection cut"), ITEMS)
    assert outcome.retry == ITEMS and outcome.unanswered


def test_other_status_from_something_in_front_stops_the_sink() -> None:
    assert "in front of VictoriaLogs" in classify_insert(Reply(418, b"teapot"), ITEMS).fatal


NOW = 1_796_169_600 * 1_000_000_000  # 2026-12-02T00:00:00Z


def test_retention_durations_are_read_as_victorialogs_reads_them() -> None:
    day = DAY_NS
    assert [duration_ns(v) for v in ("7d", "100y", "1y2d", "12h", "0")] == [
        7 * day,
        36_500 * day,
        367 * day,
        day // 2,
        0,
    ]
    assert duration_ns("3M") == duration_ns("3") == 93 * day  # months of 31 days
    assert duration_ns("7 days") is None and duration_ns("") is None


def test_flags_that_do_not_name_the_retention_mean_its_defaults() -> None:
    limits = parse_flags('-storageDataPath="/var/lib/vl"\n')
    assert (limits.retention, limits.future, limits.backfill) == ("7d", "2d", "0")
    assert parse_flags('-retentionPeriod="100y"\n').retention_ns == 36_500 * DAY_NS
    assert parse_flags('-retentionPeriod="forever"\n') is None


def test_entry_older_than_the_retention_is_refused_naming_the_flag_and_the_fix() -> None:
    why = parse_flags("").refusal(NOW - 8 * DAY_NS, NOW)
    assert "-retentionPeriod=7d" in why and "start it with a -retentionPeriod that covers" in why


def test_entry_on_the_oldest_day_kept_is_not_refused() -> None:
    assert parse_flags("").refusal(NOW - 7 * DAY_NS, NOW) is None


def test_entry_further_ahead_than_the_future_retention_is_refused() -> None:
    limits = parse_flags("")
    assert "-futureRetention=2d" in limits.refusal(NOW + 3 * DAY_NS, NOW)
    assert limits.refusal(NOW + 2 * DAY_NS, NOW) is None


def test_backfill_limit_refuses_older_entries_only_when_set() -> None:
    assert "-maxBackfillAge=1h" in parse_flags('-maxBackfillAge="1h"').refusal(NOW - 2 * 3600 * 10**9, NOW)
    assert parse_flags("").refusal(NOW - 2 * 3600 * 10**9, NOW) is None


def test_outside_keeps_entries_at_their_ingest_time_and_those_in_the_window() -> None:
    old, fresh, untimed = ("a", NOW - 30 * DAY_NS, b""), ("b", NOW, b""), ("c", None, b"")
    refused, kept = outside(parse_flags(""), [old, fresh, untimed], NOW)
    assert [item for item, _ in refused] == [old] and kept == [fresh, untimed]
    assert outside(None, [old], NOW) == ([], [old])


def test_a_sink_that_cannot_read_the_flags_refuses_nothing() -> None:
    assert sink().limits is None

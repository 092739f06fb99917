"""Tallies from the stores, by aggregation only: no document or log line is fetched.

Elasticsearch/OpenSearch: one ``_search`` with ``size: 0`` and terms/date_histogram
aggregations. Loki: LogQL metric queries (instant for totals, ``query_range`` with a
one-minute step for the per-minute series). VictoriaLogs: LogsQL ``stats`` pipes, one
query per tally, the minutes as ``_time:1m`` groups. Client networks need the addresses
first: ES has no aggregation that buckets both IPv4 /24 and IPv6 /56, so both stores
count per client address, bounded (CLIENT_BUCKETS for ES, LOKI_SERIES for Loki's
default ``max_query_series`` of 500), and the networks are summed here. When a bound
is reached the Summary lists the tally under ``bounded``: its top entries may be low.
The per-host peak minute costs one bucket per host and active minute: Elasticsearch's
``search.max_buckets`` (65,536 by default) caps hosts x minutes, e.g. 45 busy hosts over 24 h.
Each store also counts the events before and after the window, with the earliest and the
latest of them, so a report of an empty window says where the data is: ES a ``global``
aggregation in the same search, VictoriaLogs two ``stats`` queries, Loki an hourly
``count_over_time`` over the LOKI_LOOKBACK before the window (and after it, up to now).
Every count leaves out the companion lines (``udp_send_failed``, ``internal_send_failed``:
report/summary.py says why); each store counts the UDP ones apart per server, in the window
only: ES a ``filter`` aggregation beside one that holds every other tally, Loki and
VictoriaLogs a query of their own.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson

from named_senderr.errors import InputError
from named_senderr.reasons import COMPANION_KINDS, UDP_SEND_FAILED
from named_senderr.report.summary import NONE, Outside, Tallies, Window, minute_key, parse_time
from named_senderr.settings.ship import SinkConfig
from named_senderr.sinks.http import HttpClient, Reply
from named_senderr.sinks.victorialogs import QUERY_PATH, field_name, selector, tenant_headers

CLIENT_BUCKETS = 10_000  # distinct client addresses (and qnames) counted exactly per report
HOST_BUCKETS = 1_000
REASON_BUCKETS = 100
LOKI_SERIES = 500  # Loki's default max_query_series
LOKI_LOOKBACK = timedelta(hours=720)  # within Loki's default max_query_length (721h)


ES_UDP = {"term": {"bind.message_kind": UDP_SEND_FAILED}}
COMPANIONS = sorted(COMPANION_KINDS)  # one order: the same query text on every run
ES_COMPANIONS = {"terms": {"bind.message_kind": COMPANIONS}}


def es_body(window: Window) -> dict:
    """The one search: every tally of a Summary as an aggregation, the UDP lines in one of their own."""
    reasons = {"terms": {"field": "event.reason", "size": REASON_BUCKETS}}
    per_minute = {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 1}}
    hosts = {"field": "host.name", "size": HOST_BUCKETS, "missing": NONE}
    return {
        "size": 0,
        "track_total_hits": True,
        "query": {"range": {"@timestamp": {"gte": _iso(window.start), "lt": _iso(window.end)}}},
        "aggs": {
            "events": {
                "filter": {"bool": {"must_not": [ES_COMPANIONS]}},
                "aggs": {
                    "host_reason": {"terms": hosts, "aggs": {"reason": reasons}},
                    "host_minute": {"terms": hosts, "aggs": {"minute": per_minute}},
                    "minute_reason": {**per_minute, "aggs": {"reason": reasons}},
                    "client_ip": {"terms": {"field": "client.ip", "size": CLIENT_BUCKETS}},
                    "qname": {"terms": {"field": "dns.question.name", "size": CLIENT_BUCKETS, "missing": NONE}},
                    "view": {"terms": {"field": "bind.view", "size": REASON_BUCKETS, "missing": NONE}},
                },
            },
            "udp": {"filter": ES_UDP, "aggs": {"host": {"terms": hosts}}},
            "outside": {
                "global": {},
                "aggs": {
                    "before": {**_range("lt", window.start), "aggs": {"first": {"min": {"field": "@timestamp"}}}},
                    "after": {**_range("gte", window.end), "aggs": {"last": {"max": {"field": "@timestamp"}}}},
                },
            },
        },
    }


def _range(op: str, moment: datetime) -> dict:
    time = {"range": {"@timestamp": {op: _iso(moment)}}}
    return {"filter": {"bool": {"filter": [time], "must_not": [ES_COMPANIONS]}}}


def tally_elasticsearch(config: SinkConfig, window: Window) -> Tallies:
    client = HttpClient(config)
    try:
        body = orjson.dumps(es_body(window))
        reply = client.request("POST", f"/{config.index}/_search", body, {"Content-Type": "application/json"})
    finally:
        client.close()
    found = _json(reply, config.name, "search")["aggregations"]
    aggs = found["events"]
    tallies = Tallies()
    tallies.udp_host.update({b["key"]: b["doc_count"] for b in found["udp"]["host"]["buckets"]})
    for host in aggs["host_reason"]["buckets"]:
        for reason in host["reason"]["buckets"]:
            tallies.host_reason[host["key"], reason["key"]] = reason["doc_count"]
    for host in aggs["host_minute"]["buckets"]:
        for minute in host["minute"]["buckets"]:
            tallies.host_minute[host["key"], _minute_ms(minute["key"])] = minute["doc_count"]
    for minute in aggs["minute_reason"]["buckets"]:
        for reason in minute["reason"]["buckets"]:
            tallies.minute_reason[_minute_ms(minute["key"]), reason["key"]] = reason["doc_count"]
    for name in ("client_ip", "qname", "view"):
        agg = aggs[name]
        getattr(tallies, name).update({b["key"]: b["doc_count"] for b in agg["buckets"]})
        if agg.get("sum_other_doc_count"):
            tallies.bounded.append(name)
    before, after = found["outside"]["before"], found["outside"]["after"]
    first, last = before["first"]["value"], after["last"]["value"]
    tallies.outside = Outside(
        before["doc_count"],
        after["doc_count"],
        _minute_ms(first) if first is not None else None,
        _minute_ms(last) if last is not None else None,
    )
    return tallies


def tally_loki(config: SinkConfig, window: Window, now: datetime | None = None) -> Tallies:
    headers = {"X-Scope-OrgID": config.tenant} if config.tenant else {}
    client = HttpClient(config, headers)
    selector = f'{{job="{config.job}", message_kind!~"{"|".join(COMPANIONS)}"}}'
    whole = f"[{int((window.end - window.start).total_seconds())}s]"
    tallies = Tallies()
    try:

        def instant(query: str) -> list[dict]:
            params = {"query": query, "time": _iso(window.end)}
            return _json(client.request("GET", "/loki/api/v1/query", params=params), config.name, query)["data"][
                "result"
            ]

        def per_minute(by: str) -> list[dict]:
            params = {
                "query": f"sum by ({by}) (count_over_time({selector}[1m]))",
                "start": _iso(window.start + timedelta(minutes=1)),
                "end": _iso(window.end),
                "step": "60s",
            }
            return _json(client.request("GET", "/loki/api/v1/query_range", params=params), config.name, by)["data"][
                "result"
            ]

        for r in instant(f"sum by (host, reason) (count_over_time({selector}{whole}))"):
            tallies.host_reason[_label(r, "host"), _label(r, "reason")] = int(r["value"][1])
        udp = f'{{job="{config.job}", message_kind="{UDP_SEND_FAILED}"}}'
        tallies.udp_host.update(_merge(instant(f"sum by (host) (count_over_time({udp}{whole}))"), "host"))
        for by, target in (("reason", tallies.minute_reason), ("host", tallies.host_minute)):
            for r in per_minute(by):
                for stamp, value in r["values"]:
                    minute = minute_key(datetime.fromtimestamp(float(stamp) - 60, UTC))
                    key = (minute, _label(r, by)) if by == "reason" else (_label(r, by), minute)
                    target[key] += int(value)
        for name, counter, skip in (
            ("client_ip", tallies.client_ip, ' | client_ip != ""'),
            ("qname", tallies.qname, ""),
            ("view", tallies.view, ""),
        ):
            query = f"topk({LOKI_SERIES}, sum by ({name}) (count_over_time({selector}{skip} {whole})))"
            results = instant(query)
            counter.update(_merge(results, name))
            if len(results) >= LOKI_SERIES:
                tallies.bounded.append(name)

        def hourly(start: datetime, end: datetime) -> list[tuple[datetime, int]]:
            """(hour end, events in the hour before it), oldest first, from ``start`` to ``end``."""
            params = {
                "query": f"sum(count_over_time({selector}[1h]))",
                "start": _iso(start),
                "end": _iso(end),
                "step": "3600s",
            }
            result = _json(client.request("GET", "/loki/api/v1/query_range", params=params), config.name, "outside")
            points = [
                (datetime.fromtimestamp(float(t), UTC), int(v))
                for r in result["data"]["result"]
                for t, v in r["values"]
            ]
            return sorted(p for p in points if p[1])

        hour = timedelta(hours=1)
        before = hourly(window.start - LOKI_LOOKBACK + hour, window.start)
        now = now or datetime.now(UTC)
        after = hourly(window.end + hour, min(now + hour, window.end + LOKI_LOOKBACK)) if window.end < now else []
        tallies.outside = Outside(
            sum(n for _, n in before),
            sum(n for _, n in after),
            minute_key(before[0][0] - hour) if before else None,
            minute_key(after[-1][0] - timedelta(minutes=1)) if after else None,
        )
    finally:
        client.close()
    return tallies


def vl_queries(config: SinkConfig, window: Window) -> dict[str, str]:
    """Tally name -> LogsQL: every count a ``stats`` pipe; the top lists one past their bound, to tell."""
    host, reason, ip, qname, view = (
        field_name(f, config.format) for f in ("host", "reason", "client_ip", "qname", "view")
    )
    time = f"_time:[{_iso(window.start)}, {_iso(window.end)})"
    base = f"{selector(config)} {time} {vl_events_only(config)}"
    udp = f"{selector(config)} {time} {field_name('message_kind', config.format)}:={UDP_SEND_FAILED}"
    top = "count() n | sort by (n desc) limit"
    return {
        "udp_host": f"{udp} | stats by ({host}) count() n",
        "host_reason": f"{base} | stats by ({host}, {reason}) count() n",
        "minute_reason": f"{base} | stats by (_time:1m, {reason}) count() n",
        "host_minute": f"{base} | stats by ({host}, _time:1m) count() n",
        "client_ip": f"{base} {ip}:* | stats by ({ip}) {top} {CLIENT_BUCKETS + 1}",
        "qname": f"{base} | stats by ({qname}) {top} {CLIENT_BUCKETS + 1}",
        "view": f"{base} | stats by ({view}) {top} {REASON_BUCKETS + 1}",
    }


def vl_outside_queries(config: SinkConfig, window: Window) -> dict[str, str]:
    """How many events lie before and after the window, and the earliest and the latest of them."""
    events = f"{selector(config)} {vl_events_only(config)}"
    return {
        "before": f"{events} _time:<{_iso(window.start)} | stats count() n, min(_time) at",
        "after": f"{events} _time:>={_iso(window.end)} | stats count() n, max(_time) at",
    }


def vl_events_only(config: SinkConfig) -> str:
    """The LogsQL filter that leaves the companion lines out of a count (entries without the field stay in)."""
    return f"-{field_name('message_kind', config.format)}:in({', '.join(COMPANIONS)})"


def tally_victorialogs(config: SinkConfig, window: Window) -> Tallies:
    client = HttpClient(config, tenant_headers(config.tenant))
    rows: dict[str, list[dict]] = {}
    try:
        for name, query in {**vl_queries(config, window), **vl_outside_queries(config, window)}.items():
            body = urlencode({"query": query}).encode()
            reply = client.request("POST", QUERY_PATH, body, {"Content-Type": "application/x-www-form-urlencoded"})
            rows[name] = [orjson.loads(line) for line in _answer(reply, config.name, name).splitlines() if line]
    finally:
        client.close()
    host, reason = field_name("host", config.format), field_name("reason", config.format)
    key = lambda row, field: row.get(field) or NONE  # noqa: E731 - a missing field groups as ""
    minute = lambda row: minute_key(parse_time(row["_time"]))  # noqa: E731
    tallies = Tallies()
    for row in rows["udp_host"]:
        tallies.udp_host[key(row, host)] = int(row["n"])
    for row in rows["host_reason"]:
        tallies.host_reason[key(row, host), key(row, reason)] = int(row["n"])
    for row in rows["minute_reason"]:
        tallies.minute_reason[minute(row), key(row, reason)] = int(row["n"])
    for row in rows["host_minute"]:
        tallies.host_minute[key(row, host), minute(row)] = int(row["n"])
    for name, bound in (("client_ip", CLIENT_BUCKETS), ("qname", CLIENT_BUCKETS), ("view", REASON_BUCKETS)):
        field = field_name(name, config.format)
        getattr(tallies, name).update({key(row, field): int(row["n"]) for row in rows[name][:bound]})
        if len(rows[name]) > bound:
            tallies.bounded.append(name)
    before, after = (rows[side][0] if rows[side] else {"n": "0"} for side in ("before", "after"))
    tallies.outside = Outside(int(before["n"]), int(after["n"]), _at(before), _at(after))
    return tallies


def _at(row: dict) -> str | None:
    """The minute of a ``min(_time)``/``max(_time)`` answer; none when nothing was counted."""
    return minute_key(parse_time(row["at"])) if int(row["n"]) and row.get("at") else None


def _merge(results: list[dict], name: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for r in results:
        counts[_label(r, name)] += int(r["value"][1])
    return counts


def _label(result: dict, name: str) -> str:
    return result["metric"].get(name) or NONE


def _json(reply: Reply, name: str, what: str) -> dict:
    return orjson.loads(_answer(reply, name, what))


def _answer(reply: Reply, name: str, what: str) -> bytes:
    """The body of a 2xx answer; else the reason, as an InputError naming the store and the query."""
    if reply.status == 0:
        raise InputError(f"{name}: {reply.fatal or reply.error}; check the URL and that the server is up")
    if not 200 <= reply.status < 300:
        text = reply.text(300)
        if "too_many_buckets" in text:
            raise InputError(
                f"{name}: more hosts x active minutes than the store's search.max_buckets; "
                "use a shorter --since (the per-minute peak needs one bucket per host and minute)"
            )
        raise InputError(f"{name}: {what} refused: {reply.status}: {text}")
    return reply.body


def _minute_ms(epoch_ms: int) -> str:
    return minute_key(datetime.fromtimestamp(epoch_ms / 1000, UTC))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Every query in conf/kibana and conf/grafana, checked before a user relies on it.

Kibana queries run against a real Elasticsearch holding the fixture fleet.
Expected numbers come from the fleet's files (``report --from FILE``), so a query
that counts anything else, or is not valid for the server, fails here. Kibana
itself is not started: its saved objects are translated (KQL ``field : "value"``,
visState aggregations, the data view's runtime field) into the search Kibana sends.

The Grafana dashboard and alert rules are LogQL for Loki, which is AGPL and not run
here: each expression is filled in the way Grafana fills it and parsed by Grafana's
own LogQL grammar (``tests/logql``); any error node fails the test. The Sigma rule: tests/test_sigma.py.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from named_senderr.cli import main
from named_senderr.cli.report import parse_since, parse_until, summarize
from named_senderr.reasons import COMPANION_KINDS, KIND_BY_PHRASE, UDP_SEND_FAILED
from named_senderr.report.files import tally_files
from named_senderr.report.summary import window_ending
from named_senderr.settings.ship import DEFAULT_LABELS
from named_senderr.sinks.loki import METADATA_FIELDS
from tests import logql
from tests.test_report import FLEET, HOSTS, SINCE, UNTIL
from tests.test_report_drops import HOST as DROPS_HOST
from tests.test_report_drops import LOG as DROPS_LOG
from tests.test_report_drops import UNTIL as DROPS_UNTIL
from tests.test_report_drops import file_summary as drops_summary

CONF = Path(__file__).resolve().parent.parent / "conf"
START = "2026-11-20T10:00:00Z"
DROPS_START = "2026-11-21T04:48:00Z"  # bind-9.18.49's minute: 69 send failed lines and 1 UDP line, same drops
UDP_KIND, NOT_COMPANION = 'message_kind="udp_send_failed"', 'message_kind!~"udp_send_failed|internal_send_failed"'
# A real row of tests/data/corpus/bind-send-errors.jsonl: the socket code's companion of a client's send
# failure, in a minute of its own; shipped beside the fleet, it must be counted nowhere.
INTERNAL_SEND = "14-Mar-2006 10:11:12.345 general: error: internal_send: 198.51.100.9#1053: Message too long"
COMPANION_START, COMPANION_UNTIL = "2006-03-14T10:11:00Z", "2006-03-14T10:12:00Z"


def load_yaml(text: str) -> object:
    """The YAML subset our rule files use: block maps and lists, plain or quoted scalars, no inline comments."""
    lines = [(len(raw) - len(raw.lstrip()), raw.strip()) for raw in text.splitlines()]
    lines = [(indent, body) for indent, body in lines if body and not body.startswith("#")]

    def scalar(text: str) -> object:
        if text.startswith('"'):
            return json.loads(text)
        if text.startswith("'"):
            return text[1:-1]
        return int(text) if text.isdigit() else text

    def block(i: int, indent: int) -> tuple[object, int]:
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                rest = lines[i][1][2:]
                if ":" in rest and not rest.startswith('"'):
                    lines[i] = (indent + 2, rest)
                    item, i = block(i, indent + 2)
                else:
                    item, i = scalar(rest), i + 1
                items.append(item)
            return items, i
        mapping: dict = {}
        while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
            key, _, value = lines[i][1].partition(":")
            value = value.strip()
            if value:
                mapping[key], i = scalar(value), i + 1
            else:
                mapping[key], i = block(i + 1, lines[i + 1][0])
        return mapping, i

    return block(0, lines[0][0])[0]


def expected(since: str = SINCE, until: str = UNTIL):
    return summarize(FLEET, parse_since(since), parse_until(until))


def companion_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file holding only INTERNAL_SEND, shipped like the 9.18.49 log (file channel: --timezone, --host)."""
    path = tmp_path_factory.mktemp("companion") / "named.log"
    path.write_text(INTERNAL_SEND + "\n")
    return str(path)


@pytest.fixture(scope="module")
def es_index(elasticsearch_url: str, tmp_path_factory) -> str:
    index = f"named-senderr-dash-{uuid.uuid4().hex[:8]}"
    url = f"elasticsearch+{elasticsearch_url}/{index}"
    dead = tmp_path_factory.mktemp("dash") / "dead.ndjson"
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    assert main(["ship", *FLEET, "--to", url, "--dead-letter", str(dead), "--no-progress"]) == 0
    drops = ["--timezone", "UTC", "--host", DROPS_HOST, "--dead-letter", str(dead), "--no-progress"]
    assert main(["ship", DROPS_LOG, "--to", url, *drops]) == 0
    assert main(["ship", companion_log(tmp_path_factory), "--to", url, *drops]) == 0
    httpx.post(f"{elasticsearch_url}/{index}/_refresh").raise_for_status()
    return index


# --- Kibana ----------------------------------------------------------------------------------------------------


def saved_objects() -> dict[str, dict]:
    lines = (CONF / "kibana" / "named-senderr-saved-objects.ndjson").read_text().splitlines()
    return {o["id"]: o for o in map(json.loads, lines)}


def kql(query: str) -> dict:
    """The KQL our saved objects use: ``field : "value"`` or ``field : ("a" or "b")`` clauses, some after
    ``not``, joined by ``and``."""
    clauses: dict[str, list] = {"filter": [], "must_not": []}
    for part in query.split(" and "):
        negated = part.startswith("not ")
        field, _, value = part.removeprefix("not ").partition(":")
        values = [json.loads(v) for v in value.strip().removeprefix("(").removesuffix(")").split(" or ")]
        clauses["must_not" if negated else "filter"].append({"terms": {field.strip(): values}})
    return {"bool": clauses}


def kibana_search(obj: dict, data_view: dict, start: str = START, end: str = UNTIL) -> dict:
    """The search Kibana sends for a saved search or visualization, over the fleet's hour by default."""
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    query = kql(source["query"]["query"])
    query["bool"]["filter"].append({"range": {"@timestamp": {"gte": start, "lt": end}}})
    body: dict = {"size": 0, "track_total_hits": True, "query": query}
    if obj["type"] == "visualization":
        aggs = [a for a in json.loads(obj["attributes"]["visState"])["aggs"] if a["type"] != "count"]
        order = {"segment": 0, "bucket": 0, "group": 1}
        inner: dict = body
        for agg in sorted(aggs, key=lambda a: order[a["schema"]]):
            params = agg["params"]
            runtime = json.loads(data_view["attributes"]["runtimeFieldMap"])
            if params["field"] in runtime:  # Kibana sends a data view's runtime field only when it is used
                body.setdefault("runtime_mappings", {})[params["field"]] = runtime[params["field"]]
            if agg["type"] == "terms":
                spec = {"terms": {"field": params["field"], "size": params["size"], "order": {"_count": "desc"}}}
            else:
                spec = {"date_histogram": {"field": params["field"], "fixed_interval": params["interval"],
                                           "min_doc_count": params["min_doc_count"]}}  # fmt: skip
            inner["aggs"] = {agg["id"]: spec}
            inner = spec
    return body


def es_search(base: str, index: str, body: dict) -> dict:
    reply = httpx.post(f"{base}/{index}/_search", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_data_view_pattern_covers_the_shipped_index(es_index: str) -> None:
    view = saved_objects()["named-senderr"]
    assert (
        fnmatch.fnmatch(es_index, view["attributes"]["title"]) and view["attributes"]["timeFieldName"] == "@timestamp"
    )


def test_saved_search_finds_every_fleet_event(elasticsearch_url: str, es_index: str) -> None:
    objects = saved_objects()
    found = es_search(
        elasticsearch_url, es_index, kibana_search(objects["named-senderr-send-errors"], objects["named-senderr"])
    )
    assert found["hits"]["total"]["value"] == sum(HOSTS.values())


def test_over_time_by_reason_counts_each_minute_and_reason(elasticsearch_url: str, es_index: str) -> None:
    objects = saved_objects()
    body = kibana_search(objects["named-senderr-over-time-by-reason"], objects["named-senderr"])
    buckets = es_search(elasticsearch_url, es_index, body)["aggregations"]["2"]["buckets"]
    assert minute_series(buckets) == expected().minutes


def test_top_servers_counts_each_host(elasticsearch_url: str, es_index: str) -> None:
    objects = saved_objects()
    body = kibana_search(objects["named-senderr-top-servers"], objects["named-senderr"])
    buckets = es_search(elasticsearch_url, es_index, body)["aggregations"]["2"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in buckets} == HOSTS


def test_top_client_addresses_counts_each_address(elasticsearch_url: str, es_index: str) -> None:
    objects = saved_objects()
    body = kibana_search(objects["named-senderr-top-client-addresses"], objects["named-senderr"])
    buckets = es_search(elasticsearch_url, es_index, body)["aggregations"]["2"]["buckets"]
    files = tally_files(FLEET, window_ending(parse_until(UNTIL), parse_since(SINCE)), print).client_ip
    assert {b["key"]: b["doc_count"] for b in buckets} == dict(files.most_common(20))


def test_top_client_networks_runtime_field_groups_by_24_and_56(elasticsearch_url: str, es_index: str) -> None:
    """The data view's painless runtime field; the suite's minimal Elasticsearch has no painless module."""
    objects = saved_objects()
    body = kibana_search(objects["named-senderr-top-client-networks"], objects["named-senderr"])
    reply = httpx.post(f"{elasticsearch_url}/{es_index}/_search", json=body)
    if reply.status_code == 400 and "script_lang not supported [painless]" in reply.text:
        pytest.skip("this Elasticsearch has no lang-painless module (integ-test zip); the query reached the server")
    buckets = reply.json()["aggregations"]["2"]["buckets"]
    assert [(b["key"], b["doc_count"]) for b in buckets] == expected().client_networks


def minute_series(buckets: list[dict]) -> dict[str, dict[str, int]]:
    return {
        time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(b["key"] / 1000)): {
            r["key"]: r["doc_count"] for r in b["3"]["buckets"]
        }
        for b in buckets
    }


def drops_search(base: str, index: str, object_id: str) -> dict:
    """A saved object's search over bind-9.18.49's minute."""
    objects = saved_objects()
    body = kibana_search(objects[object_id], objects["named-senderr"], DROPS_START, DROPS_UNTIL)
    return es_search(base, index, body)


def test_kibana_counts_each_drop_once_on_the_9_18_49_log(elasticsearch_url: str, es_index: str) -> None:
    """69 send failed lines and 1 UDP line for the same drops: every count says 69, as ``report`` does."""
    summary = drops_summary()
    found = drops_search(elasticsearch_url, es_index, "named-senderr-send-errors")
    assert found["hits"]["total"]["value"] == summary.events == 69
    per_minute = drops_search(elasticsearch_url, es_index, "named-senderr-over-time-by-reason")["aggregations"]["2"]
    assert minute_series(per_minute["buckets"]) == summary.minutes == {"2026-11-21T04:48Z": {"would_block": 69}}
    servers = drops_search(elasticsearch_url, es_index, "named-senderr-top-servers")["aggregations"]["2"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in servers} == {DROPS_HOST: 69}
    clients = drops_search(elasticsearch_url, es_index, "named-senderr-top-client-addresses")["aggregations"]["2"]
    assert {b["key"]: b["doc_count"] for b in clients["buckets"]} == {"2001:db8:53::2": 69}


def test_kibana_udp_drop_signal_is_a_series_of_its_own(elasticsearch_url: str, es_index: str) -> None:
    found = drops_search(elasticsearch_url, es_index, "named-senderr-udp-drop-seconds")
    assert found["hits"]["total"]["value"] == drops_summary().udp_drop_seconds == 1
    assert minute_series(found["aggregations"]["2"]["buckets"]) == {"2026-11-21T04:48Z": {DROPS_HOST: 1}}


def test_kibana_counts_leave_the_internal_send_line_out(elasticsearch_url: str, es_index: str) -> None:
    """The line is in the index (a query for its kind finds it), yet every count over its minute says 0."""
    window = {"range": {"@timestamp": {"gte": COMPANION_START, "lt": COMPANION_UNTIL}}}
    shipped = {
        "size": 0,
        "query": {"bool": {"filter": [window, {"term": {"bind.message_kind": "internal_send_failed"}}]}},
    }
    assert es_search(elasticsearch_url, es_index, shipped)["hits"]["total"]["value"] == 1
    objects = saved_objects()
    counts = {
        object_id: es_search(
            elasticsearch_url, es_index, kibana_search(obj, objects["named-senderr"], COMPANION_START, COMPANION_UNTIL)
        )["hits"]["total"]["value"]
        for object_id, obj in objects.items()
        if obj["type"] != "index-pattern" and object_id != "named-senderr-top-client-networks"  # painless: above
    }
    assert counts == dict.fromkeys(counts, 0) and len(counts) == 5


def test_every_kibana_count_but_the_signal_leaves_the_companion_lines_out() -> None:
    queries = {
        o["id"]: json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        for o in saved_objects().values()
        if o["type"] != "index-pattern"
    }
    signal = 'event.dataset : "bind.send_error" and bind.message_kind : "udp_send_failed"'
    assert queries.pop("named-senderr-udp-drop-seconds") == signal
    companions = '("udp_send_failed" or "internal_send_failed")'
    assert set(queries.values()) == {f'event.dataset : "bind.send_error" and not bind.message_kind : {companions}'}


# --- Grafana / Loki: Grafana's own LogQL grammar, no Loki server (Loki is AGPL) --------------------------------

DASHBOARD = json.loads((CONF / "grafana" / "named-senderr-loki-dashboard.json").read_text())
RULES = load_yaml((CONF / "grafana" / "loki-alert-rules.yaml").read_text())["groups"][0]["rules"]
# Time ranges with the interval Grafana gives a full-width panel (rangeutil's roundInterval of the range over
# about 1,800 px): the fleet's hour, the dashboard's default 24 h, a week.
VIEWS = {"1h": (timedelta(hours=1), timedelta(seconds=2)), "24h": (timedelta(days=1), timedelta(minutes=1)),
         "7d": (timedelta(days=7), timedelta(minutes=5))}  # fmt: skip
SHIPPED_NAMES = set(DEFAULT_LABELS) | set(METADATA_FIELDS)  # stream labels and structured metadata of the sink


def panel_queries(view: str = "24h") -> dict[str, tuple[str, str]]:
    """Panel title -> (query type, the LogQL Grafana sends Loki), the dashboard's variables at their values."""
    time_range, interval = VIEWS[view]
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for variable in DASHBOARD["templating"]["list"]:
        value = variable["current"]["value"]
        if variable.get("multi") or variable.get("includeAll"):
            multi[variable["name"]] = value if isinstance(value, list) else [value]
        else:
            single[variable["name"]] = value
    queries = {}
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            kind = target.get("queryType", "range")
            expr = logql.interpolate(target["expr"], query_type=kind, time_range=time_range, interval=interval,
                                     variables=single, multi=multi)  # fmt: skip
            queries[f"{panel['title']} ({target['refId']})"] = (kind, expr)
    return queries


def broken(parsed: list[logql.Parsed]) -> list[str]:
    return [p.explain() for p in parsed if not p.ok]


@pytest.mark.parametrize("view", VIEWS)
def test_every_dashboard_query_parses_with_grafanas_logql_grammar(view: str) -> None:
    queries = panel_queries(view)
    assert len(queries) == len(DASHBOARD["panels"]) == 7
    assert broken(logql.parse([expr for _, expr in queries.values()])) == []


def test_dashboard_queries_use_only_variables_grafana_fills_for_loki() -> None:
    leftovers = {title: logql.leftover_variables(expr) for title, (_, expr) in panel_queries().items()}
    assert {title: names for title, names in leftovers.items() if names} == {}


def test_every_panel_is_a_metric_query() -> None:
    """Loki answers a log query on ``/query`` (instant) with 400; the charts and tables need numbers anyway."""
    queries = panel_queries()
    parsed = logql.parse([expr for _, expr in queries.values()])
    assert {title: p.kind for title, p in zip(queries, parsed, strict=True)} == dict.fromkeys(queries, "MetricExpr")


def test_dashboard_and_alert_queries_read_only_labels_and_metadata_the_loki_sink_ships() -> None:
    """A label filter on a name the sink never sends matches nothing, without any error from Loki."""
    parsed = logql.parse([expr for _, expr in panel_queries().values()] + [rule["expr"] for rule in RULES])
    assert set().union(*(p.labels_read for p in parsed)) - SHIPPED_NAMES == set()


def test_dashboard_check_fails_on_a_panel_broken_on_purpose() -> None:
    kind, expr = panel_queries()["Send errors per server (A)"]
    (parsed,) = logql.parse([expr.replace("by (host)", "by (host")])
    assert kind == "instant" and not parsed.ok


def test_every_alert_rule_parses_as_a_metric_query_with_grafanas_logql_grammar() -> None:
    """The ruler evaluates the expression as written: no Grafana variables, nothing left to fill."""
    parsed = logql.parse([rule["expr"] for rule in RULES])
    assert broken(parsed) == [] and [p.kind for p in parsed] == ["MetricExpr"] * 3


def test_every_loki_count_leaves_the_companion_lines_out_and_one_panel_and_rule_count_the_udp_lines_alone() -> None:
    """Loki is not run: the stream selector of each expression decides, so each one is checked for it.

    What such selectors count is shown on the scripted Loki, one stream per message_kind label
    (tests/test_report_drops.py: 69 events and 1 UDP second where counting both would say 70)."""
    exprs = {title: expr for title, (_, expr) in panel_queries().items()} | {r["alert"]: r["expr"] for r in RULES}
    selectors = {name: re.findall(r"\{[^}]*\}", expr)[0] for name, expr in exprs.items()}
    signal = {name for name, sel in selectors.items() if UDP_KIND in sel}
    assert signal == {"UDP drop signal: seconds with drops per server (A)", "BindUdpDropsLogged"}
    counts = {name: sel for name, sel in selectors.items() if name not in signal}
    assert {name: sel for name, sel in counts.items() if NOT_COMPANION not in sel} == {}


def test_loki_count_matcher_leaves_out_exactly_the_companion_kinds() -> None:
    """Loki anchors a regex matcher on the whole value (RE2): internal_send_failed is dropped, no event kind is."""
    regex = json.loads(NOT_COMPANION.partition("!~")[2])
    kinds = set(KIND_BY_PHRASE.values()) | {UDP_SEND_FAILED}
    assert {kind for kind in kinds if re.fullmatch(regex, kind)} == COMPANION_KINDS

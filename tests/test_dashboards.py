"""Every query in conf/kibana, conf/grafana and conf/sigma, run against real stores holding the fixture fleet.

Expected numbers come from the fleet's files (``report --from FILE``), so a query
that counts anything else, or is not valid for the server, fails here. Kibana
itself is not started: its saved objects are translated (KQL ``field : "value"``,
visState aggregations, the data view's runtime field) into the search Kibana sends.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from named_senderr.cli import main
from named_senderr.cli.report import parse_since, parse_until, summarize
from named_senderr.report.files import tally_files
from named_senderr.report.summary import window_ending
from tests.test_report import FLEET, HOSTS, PEAKS, REASONS, SINCE, UNTIL

pytestmark = pytest.mark.servers
CONF = Path(__file__).resolve().parent.parent / "conf"
START = "2026-11-20T10:00:00Z"
SPIKE_AT = "2026-11-20T10:18:00Z"  # one minute after ns1's burst: a 5 m window holds it


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


@pytest.fixture(scope="module")
def es_index(elasticsearch_url: str, tmp_path_factory) -> str:
    index = f"named-senderr-dash-{uuid.uuid4().hex[:8]}"
    url = f"elasticsearch+{elasticsearch_url}/{index}"
    dead = tmp_path_factory.mktemp("dash") / "dead.ndjson"
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    assert main(["ship", *FLEET, "--to", url, "--dead-letter", str(dead), "--no-progress"]) == 0
    httpx.post(f"{elasticsearch_url}/{index}/_refresh").raise_for_status()
    return index


@pytest.fixture(scope="module")
def loki_job(loki_url: str, tmp_path_factory) -> str:
    job = f"dash-{uuid.uuid4().hex[:8]}"
    dead = tmp_path_factory.mktemp("dash") / "dead.ndjson"
    assert (
        main(["ship", *FLEET, "--to", f"loki+{loki_url}?job={job}", "--dead-letter", str(dead), "--no-progress"]) == 0
    )
    deadline = time.monotonic() + 15  # bounded poll: the ingester answers once it has every line
    while instant(loki_url, f'sum(count_over_time({{job="{job}"}}[1h]))', UNTIL) != {"": 1522}:
        assert time.monotonic() < deadline, "Loki did not show the fleet's 1522 events within 15 s"
        time.sleep(0.3)
    return job


# --- Kibana ----------------------------------------------------------------------------------------------------


def saved_objects() -> dict[str, dict]:
    lines = (CONF / "kibana" / "named-senderr-saved-objects.ndjson").read_text().splitlines()
    return {o["id"]: o for o in map(json.loads, lines)}


def kql(query: str) -> dict:
    """The KQL our saved objects use: ``field : "value"`` clauses joined by ``and``."""
    clauses = []
    for part in query.split(" and "):
        field, _, value = part.partition(":")
        clauses.append({"term": {field.strip(): json.loads(value.strip())}})
    return {"bool": {"filter": clauses}}


def kibana_search(obj: dict, data_view: dict) -> dict:
    """The search Kibana sends for a saved search or visualization, over the fleet's hour."""
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    query = kql(source["query"]["query"])
    query["bool"]["filter"].append({"range": {"@timestamp": {"gte": START, "lt": UNTIL}}})
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
    series = {
        time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(b["key"] / 1000)): {
            r["key"]: r["doc_count"] for r in b["3"]["buckets"]
        }
        for b in buckets
    }
    assert series == expected().minutes


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


# --- Sigma -------------------------------------------------------------------------------------------------------


def sigma_to_es(rule: dict, at: str) -> tuple[dict, int]:
    """The rule's ``selection | count() by FIELD > N`` over ``timeframe`` ending at ``at``: (search, N)."""
    detection = rule["detection"]
    selection, _, aggregation = detection["condition"].partition("|")
    assert selection.strip() == "selection"
    count, _, threshold = aggregation.partition(">")
    field = count.split(" by ")[1].strip()
    clauses = [{"terms" if isinstance(v, list) else "term": {k: v}} for k, v in detection["selection"].items()]
    minutes = int(detection["timeframe"].removesuffix("m"))
    end = parse_until(at)
    start = (end - parse_since(f"{minutes}m")).strftime("%Y-%m-%dT%H:%M:%SZ")
    clauses.append({"range": {"@timestamp": {"gte": start, "lt": at}}})
    limit = int(threshold)
    aggs = {"by": {"terms": {"field": field, "size": 1000, "min_doc_count": limit + 1}}}
    return {"size": 0, "query": {"bool": {"filter": clauses}}, "aggs": aggs}, limit


def test_sigma_rule_fires_for_the_servers_over_the_threshold(elasticsearch_url: str, es_index: str) -> None:
    rule = load_yaml((CONF / "sigma" / "bind-send-error-spike.yml").read_text())
    body, limit = sigma_to_es(rule, SPIKE_AT)
    buckets = es_search(elasticsearch_url, es_index, body)["aggregations"]["by"]["buckets"]
    over = {h.host: h.events for h in expected("5m", SPIKE_AT).hosts if h.events > limit}
    assert over == {"ns1": 125} and {b["key"]: b["doc_count"] for b in buckets} == over


# --- Grafana / Loki ----------------------------------------------------------------------------------------------


def instant(base: str, query: str, at: str) -> dict[str, int]:
    reply = httpx.get(f"{base}/loki/api/v1/query", params={"query": query, "time": at})
    assert reply.status_code == 200, reply.text
    return {next(iter(r["metric"].values()), ""): int(r["value"][1]) for r in reply.json()["data"]["result"]}


def per_minute(base: str, query: str) -> dict[str, dict[str, int]]:
    params = {"query": query, "start": "2026-11-20T10:01:00Z", "end": UNTIL, "step": "60s"}
    reply = httpx.get(f"{base}/loki/api/v1/query_range", params=params)
    assert reply.status_code == 200, reply.text
    series: dict[str, dict[str, int]] = {}
    for r in reply.json()["data"]["result"]:
        key = next(iter(r["metric"].values()))
        for stamp, value in r["values"]:
            if int(value):
                series.setdefault(time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(float(stamp) - 60)), {})[key] = int(
                    value
                )
    return series


def panels(job: str) -> dict[str, str]:
    """Panel title -> LogQL, with the dashboard variables as Grafana fills them for the fleet's hour."""
    dashboard = json.loads((CONF / "grafana" / "named-senderr-loki-dashboard.json").read_text())
    return {
        p["title"]: p["targets"][0]["expr"].replace("$job", job).replace("$__range", "1h") for p in dashboard["panels"]
    }


def test_dashboard_per_minute_by_reason_matches_the_files(loki_url: str, loki_job: str) -> None:
    assert per_minute(loki_url, panels(loki_job)["Send errors per minute by reason"]) == expected().minutes


def test_dashboard_per_server_and_reason_mix_match_the_files(loki_url: str, loki_job: str) -> None:
    queries = panels(loki_job)
    assert instant(loki_url, queries["Send errors per server"], UNTIL) == HOSTS
    assert instant(loki_url, queries["Reason mix"], UNTIL) == REASONS


def test_dashboard_top_ipv4_networks_and_qnames_match_the_files(loki_url: str, loki_job: str) -> None:
    queries, summary = panels(loki_job), expected()
    v4 = {net: n for net, n in summary.client_networks if "." in net}
    assert instant(loki_url, queries["Top client networks (IPv4 /24)"], UNTIL) == v4
    assert instant(loki_url, queries["Top query names"], UNTIL) == dict(summary.qnames)


def test_dashboard_per_server_series_peaks_where_the_files_do(loki_url: str, loki_job: str) -> None:
    series = per_minute(loki_url, panels(loki_job)["Send errors by server per minute"])
    peaks = {}
    for host in HOSTS:
        minute = min(series, key=lambda m: (-series[m].get(host, 0), m))
        peaks[host] = (minute, series[minute][host])
    assert peaks == PEAKS


def test_alert_rules_fire_for_the_servers_over_the_threshold(loki_url: str, loki_job: str) -> None:
    rules = load_yaml((CONF / "grafana" / "loki-alert-rules.yaml").read_text())["groups"][0]["rules"]
    spike, storm = (r["expr"].replace('job="named-senderr"', f'job="{loki_job}"') for r in rules)
    window = expected("5m", SPIKE_AT).hosts
    assert instant(loki_url, spike, SPIKE_AT) == {h.host: h.events for h in window if h.events > 100} == {"ns1": 125}
    storms = {h.host: h.reasons.get("would_block", 0) for h in window}
    assert instant(loki_url, storm, SPIKE_AT) == {h: n for h, n in storms.items() if n > 100}

"""report: the fixture fleet summed from files, Elasticsearch, OpenSearch and Loki gives the same, known numbers.

Elasticsearch and OpenSearch are real servers. Loki is AGPL and not run: its side is a scripted loopback
server answering in the shapes Loki's HTTP API reference documents, and every LogQL query the report
sends is parsed by Grafana's own LogQL grammar (``tests/logql``).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.cli.report import parse_since, parse_until, summarize
from named_senderr.errors import ConfigError
from named_senderr.report import files
from named_senderr.report.files import tally_files
from named_senderr.report.stores import LOKI_SERIES
from named_senderr.report.summary import NONE, Summary, Tallies, Window, client_network, parse_time, window_ending
from tests import logql
from tests.faults import FaultServer, Plan, Reply, Request

FLEET = sorted(str(p) for p in (Path(__file__).resolve().parent / "data" / "fleet").glob("*.log"))
UNTIL, SINCE = "2026-11-20T11:00:00Z", "1h"
# Known from tests/data/fleet/generate.py (bursts) and counted once with `report --from FILE`.
HOSTS = {"ns1": 512, "ns3": 487, "ns2": 299, "ns4": 224}
PEAKS = {"ns1": ("2026-11-20T10:17Z", 98), "ns3": ("2026-11-20T10:05Z", 126),
         "ns2": ("2026-11-20T10:42Z", 63), "ns4": ("2026-11-20T10:33Z", 47)}  # fmt: skip
REASONS = {"would_block": 1245, "connection_reset": 153, "host_unreachable": 124}
NETWORKS = [("198.51.100.0/24", 609), ("203.0.113.0/24", 318), ("2001:db8:1:100::/56", 287),
            ("192.0.2.0/24", 154), ("2001:db8:2::/56", 154)]  # fmt: skip


def fleet_summary(source: list[str]) -> Summary:
    return summarize(source, parse_since(SINCE), parse_until(UNTIL))


def numbers(summary: Summary) -> dict:
    """Everything but the source's names."""
    data = summary.as_dict()
    del data["source"], data["sources"]
    return data


def test_files_give_the_known_counts_per_host_reason_peak_and_network() -> None:
    summary = fleet_summary(FLEET)
    assert {h.host: h.events for h in summary.hosts} == HOSTS
    assert {h.host: (h.peak_minute, h.peak_events) for h in summary.hosts} == PEAKS
    assert summary.reasons == REASONS and summary.client_networks == NETWORKS
    assert summary.bounded == []


def test_window_excludes_events_outside_since_until() -> None:
    summary = summarize(FLEET, parse_since("10m"), parse_until("2026-11-20T10:10:00Z"))
    assert summary.events == sum(sum(r.values()) for r in summary.minutes.values())
    assert min(summary.minutes) == "2026-11-20T10:00Z" and max(summary.minutes) == "2026-11-20T10:09Z"


def test_ipv4_groups_by_24_and_ipv6_by_56() -> None:
    assert client_network("198.51.100.200") == "198.51.100.0/24"
    assert client_network("2001:db8:1:1ff::9") == "2001:db8:1:100::/56"


def test_bad_since_names_the_option_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"--since '3x'.*e\.g\. 24h"):
        parse_since("3x")


def test_json_output_is_one_object_with_hosts(capsys) -> None:
    assert main(["report", "--from", *FLEET, "--since", SINCE, "--until", UNTIL, "--json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert {h["host"]: h["events"] for h in data["hosts"]} == HOSTS


def test_plot_writes_a_png(tmp_path: Path, capsys) -> None:
    png = tmp_path / "r.png"
    args = ["report", "--from", *FLEET, "--since", SINCE, "--until", UNTIL, "--plot", str(png)]
    assert main(args) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "peak 2026-11-20T10:17Z (98)" in capsys.readouterr().out


def ship_fleet(tmp_path: Path, url: str) -> None:
    dead = tmp_path / "dead.ndjson"
    assert main(["ship", *FLEET, "--to", url, "--dead-letter", str(dead), "--no-progress"]) == 0


def poll_summary(source: str, expected: dict, make: Callable[[list[str]], Summary] = fleet_summary) -> Summary:
    """Bounded poll: stores are eventually consistent (refresh interval, Loki ingester)."""
    deadline = time.monotonic() + 15
    while True:
        summary = make([source])
        if numbers(summary) == expected or time.monotonic() > deadline:
            return summary
        time.sleep(0.3)


@pytest.mark.servers
@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
def test_search_store_report_equals_the_files_report(kind: str, request, tmp_path: Path) -> None:
    base = request.getfixturevalue(f"{kind}_url")
    url = f"{kind}+{base}/named-senderr-report-{uuid.uuid4().hex[:8]}"
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    ship_fleet(tmp_path, url)
    expected = numbers(fleet_summary(FLEET))
    assert numbers(poll_summary(url, expected)) == expected


# --- Loki: its query API as documented, on a scripted loopback server (Loki is AGPL and not run) -------------
# Shapes from Loki's HTTP API reference (docs/sources/reference/loki-http-api.md): /loki/api/v1/query answers
# "vector" (or "streams" to a log query, which Loki refuses on /query with 400), each result
# {"metric": {labels}, "value": [<number: unix seconds>, "<string: value>"]}; /loki/api/v1/query_range answers
# "matrix" (or "streams"), each {"metric": {labels}, "values": [[<number>, "<string>"], ...]} oldest first;
# "data" carries "stats" too; absent labels are absent from "metric". Timestamps are RFC 3339 or numbers, a step
# a duration [0-9]+[smhdwy] or float seconds, and anything else is a 400.

LOKI_STATS = {"summary": {"bytesProcessedPerSecond": 0, "execTime": 0.002, "linesProcessedPerSecond": 0,
                          "queueTime": 0, "totalBytesProcessed": 0, "totalLinesProcessed": 0}}  # fmt: skip
_STEP = re.compile(r"^(\d+[smhdwy]|\d+(\.\d+)?)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A documented duration (``[0-9]+[smhdwy]``, or float seconds) in seconds."""
    return float(duration) if duration[-1].isdigit() else int(duration[:-1]) * _SECONDS[duration[-1]]


def loki_series(tallies: Tallies) -> dict[tuple[str, str], list[tuple[dict[str, str], str | None, int]]]:
    """(endpoint, grouping) -> (labels, minute or None, count): what Loki holds for events with these tallies."""

    def labels(**values: str) -> dict[str, str]:
        return {k: v for k, v in values.items() if v != NONE}  # Loki leaves an absent label out of "metric"

    return {
        ("query", "host, reason"): [(labels(host=h, reason=r), None, n) for (h, r), n in tallies.host_reason.items()],
        ("query", "host"): [(labels(host=h), None, n) for (h, _), n in tallies.host_reason.items()],
        ("query", "client_ip"): [(labels(client_ip=a), None, n) for a, n in tallies.client_ip.items()],
        ("query", "qname"): [(labels(qname=q), None, n) for q, n in tallies.qname.items()],
        ("query", "view"): [(labels(view=v), None, n) for v, n in tallies.view.items()],
        ("query_range", "reason"): [(labels(reason=r), m, n) for (m, r), n in tallies.minute_reason.items()],
        ("query_range", "host"): [(labels(host=h), m, n) for (h, m), n in tallies.host_minute.items()],
        ("query_range", ""): [({}, m, n) for (m, _), n in tallies.minute_reason.items()],
    }


def kind_tallies(
    paths: list[str], window: Window, timezone: str | None = None, host: str | None = None
) -> dict[str, Tallies]:
    """message_kind -> the tallies of that kind's lines alone: Loki's streams, one per kind label."""
    records = files.read(paths, print, timezone, host)
    return {
        kind: files.tally([replace(r, kind="") for r in records if r.kind == kind], window)
        for kind in {r.kind for r in records}
    }


def selected(query: str, kind: str) -> bool:
    """Whether the stream selector of ``query`` takes the streams whose ``message_kind`` label is ``kind``.

    LogQL's four label matchers: ``=`` and ``!=`` compare, ``=~`` and ``!~`` match the whole value as a regex."""
    matchers = re.findall(r'message_kind(=~|!~|!=|=)"([^"]*)"', query)
    return all(
        (re.fullmatch(value, kind) is not None if "~" in op else value == kind) == (op[0] == "=")
        for op, value in matchers
    )


def loki_answer(result_type: str, result: list[dict]) -> Reply:
    body = {"status": "success", "data": {"resultType": result_type, "result": result, "stats": LOKI_STATS}}
    return Reply(200, orjson.dumps(body), {"Content-Type": "application/json"})


def loki_time(text: str) -> float:
    """A documented timestamp (RFC 3339, or a number: nanoseconds when whole) as unix seconds, else ValueError."""
    if re.fullmatch(r"\d+", text):
        return int(text) / 1e9
    return float(text) if re.fullmatch(r"\d+\.\d*", text) else parse_time(text).timestamp()


def unix(seconds: float) -> int | float:
    """A sample time as Loki writes it: unix seconds, with a fraction only when there is one."""
    return int(seconds) if seconds == int(seconds) else seconds


def scripted_loki(streams: Tallies | dict[str, Tallies]) -> Plan:
    """Loki holding events with these tallies (per message_kind label), answering as the API reference shows."""
    by_kind = streams if isinstance(streams, dict) else {"send_failed": streams}
    held = {kind: loki_series(tallies) for kind, tallies in by_kind.items()}
    groupings = next(iter(held.values()))

    def plan(request: Request, _: int) -> Reply:
        url = urlsplit(request.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        endpoint = url.path.removeprefix("/loki/api/v1/")
        grouping = re.search(r"sum(?: by \(([^)]*)\) )?\(count_over_time", params.get("query", ""))
        try:
            times = [loki_time(params[k]) for k in (("time",) if endpoint == "query" else ("start", "end"))]
        except (KeyError, ValueError) as exc:
            return Reply(400, f"invalid parameter: {exc}".encode())
        if request.method != "GET" or not grouping or (endpoint, grouping[1] or "") not in groupings:
            return Reply(400, b"parse error: not a query this Loki holds an answer for")
        query = params["query"]
        found = [
            s for kind, series in held.items() if selected(query, kind) for s in series[endpoint, grouping[1] or ""]
        ]
        if endpoint == "query":
            limit = re.match(r"topk\((\d+),", query)
            summed: dict[str, int] = {}  # sum by (...) adds the streams and the series that share the labels
            for metric, _, n in found:
                key = orjson.dumps(metric, option=orjson.OPT_SORT_KEYS).decode()
                summed[key] = summed.get(key, 0) + n
            ranked = sorted(summed.items(), key=lambda kv: -kv[1])[: int(limit[1]) if limit else None]
            return loki_answer(
                "vector", [{"metric": orjson.loads(k), "value": [unix(times[0]), str(n)]} for k, n in ranked]
            )
        if not _STEP.match(params.get("step", "")):
            return Reply(400, b"invalid parameter: step")
        step, span = seconds(params["step"]), seconds(re.findall(r"\[(\d+[smhdwy])\]", params["query"])[-1])
        sums: dict[tuple[str, float], int] = {}
        for metric, minute, n in found:  # count_over_time([range]) at t counts the minutes ending in (t - range, t]
            stamp = parse_time(minute.replace("Z", ":00Z")).timestamp() + 60
            at = times[0] + max(0, math.ceil((stamp - times[0]) / step)) * step  # the first step t >= stamp
            for t in (at + k * step for k in range(math.ceil(span / step))):
                if t - span < stamp <= t <= times[1] and n:
                    key = orjson.dumps(metric, option=orjson.OPT_SORT_KEYS).decode(), t
                    sums[key] = sums.get(key, 0) + n
        points: dict[str, list[list]] = {}
        for (key, t), n in sums.items():
            points.setdefault(key, []).append([unix(t), str(n)])
        result = [{"metric": orjson.loads(k), "values": sorted(v)} for k, v in points.items()]
        return loki_answer("matrix", result)

    return plan


def fleet_tallies() -> Tallies:
    return tally_files(FLEET, window_ending(parse_until(UNTIL), parse_since(SINCE)), print)


def test_loki_report_from_documented_answers_equals_the_files_report() -> None:
    with FaultServer(scripted_loki(fleet_tallies())) as loki:
        assert numbers(fleet_summary([f"loki+{loki.url}?job=named-senderr"])) == numbers(fleet_summary(FLEET))


def test_loki_report_sends_only_metric_queries_grafanas_grammar_parses() -> None:
    """Metric queries only: Loki answers them with a vector or a matrix, never with log streams.

    Six count the window, one the UDP lines apart; two count what lies before and after it (the window ends
    in the past)."""
    with FaultServer(scripted_loki(fleet_tallies())) as loki:
        fleet_summary([f"loki+{loki.url}?job=named-senderr"])
    queries = [parse_qs(urlsplit(r.path).query)["query"][0] for r in loki.requests]
    parsed = logql.parse(queries)
    assert len(queries) == 9 and [p.explain() for p in parsed if not p.ok] == []
    assert {p.kind for p in parsed} == {"MetricExpr"}


def test_loki_report_marks_client_addresses_bounded_at_the_series_limit() -> None:
    """Loki's topk keeps LOKI_SERIES of the 520 addresses: the tally is cut, and the report says so."""
    tallies = Tallies()
    tallies.client_ip.update({f"192.0.2.{i}" if i < 250 else f"2001:db8::{i:x}": 1 for i in range(LOKI_SERIES + 20)})
    with FaultServer(scripted_loki(tallies)) as loki:
        summary = fleet_summary([f"loki+{loki.url}?job=named-senderr"])
    assert summary.bounded == ["client_ip"] and sum(n for _, n in summary.client_networks) == LOKI_SERIES


def test_loki_report_sends_the_tenant_with_every_query() -> None:
    with FaultServer(scripted_loki(fleet_tallies())) as loki:
        fleet_summary([f"loki+{loki.url}?job=named-senderr&tenant=dns"])
    assert [r.headers.get("x-scope-orgid") for r in loki.requests] == ["dns"] * 9


def test_loki_refusing_a_query_names_the_query_and_its_answer(capsys) -> None:
    refuse = lambda request, _: Reply(400, b"parse error at line 1, col 6: syntax error: unexpected IDENTIFIER")  # noqa: E731
    with FaultServer(refuse) as loki:
        code = main(["report", "--from", f"loki+{loki.url}?job=named-senderr", "--since", SINCE, "--until", UNTIL])
    err = capsys.readouterr().err
    assert code != 0 and "count_over_time" in err and "refused: 400: parse error at line 1" in err


def test_by_client_net_prints_only_the_network_table(capsys) -> None:
    assert main(["report", "--from", *FLEET, "--since", SINCE, "--until", UNTIL, "--by", "client-net"]) == 0
    out = capsys.readouterr().out
    assert "198.51.100.0/24" in out and "peak" not in out and "top qnames" not in out


def test_report_without_plot_does_not_import_matplotlib() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from named_senderr.cli import main; "
        f"main(['report', '--from', {FLEET[0]!r}, '--since', '1h', '--until', {UNTIL!r}, '--json']); "
        "sys.exit(1 if 'matplotlib' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.servers
@pytest.mark.parametrize("form", ["ecs", "flat"])
def test_victorialogs_report_equals_the_files_report(form: str, victorialogs_url: str, tmp_path: Path) -> None:
    url = f"victorialogs+{victorialogs_url}?job=report-{uuid.uuid4().hex[:8]}&format={form}"
    ship_fleet(tmp_path, url)
    expected = numbers(fleet_summary(FLEET))
    assert numbers(poll_summary(url, expected)) == expected


@pytest.mark.servers
def test_victorialogs_report_reads_only_its_tenant(victorialogs_url: str, tmp_path: Path) -> None:
    job = f"report-{uuid.uuid4().hex[:8]}"
    ship_fleet(tmp_path, f"victorialogs+{victorialogs_url}?job={job}&tenant=5")
    expected = numbers(fleet_summary(FLEET))
    assert numbers(poll_summary(f"victorialogs+{victorialogs_url}?job={job}&tenant=5", expected)) == expected
    assert fleet_summary([f"victorialogs+{victorialogs_url}?job={job}"]).events == 0


@pytest.mark.servers
def test_victorialogs_report_marks_top_lists_cut_at_their_bound(
    victorialogs_url: str, tmp_path: Path, monkeypatch
) -> None:
    from named_senderr.report import stores

    url = f"victorialogs+{victorialogs_url}?job=report-{uuid.uuid4().hex[:8]}"
    ship_fleet(tmp_path, url)
    expected = numbers(fleet_summary(FLEET))
    poll_summary(url, expected)
    monkeypatch.setattr(stores, "CLIENT_BUCKETS", 3)
    summary = fleet_summary([url])
    assert summary.bounded == ["client_ip", "qname"] and summary.events == expected["events"]


def test_victorialogs_report_asks_only_stats_queries_over_the_window() -> None:
    from named_senderr.report.stores import vl_queries
    from named_senderr.report.summary import window_ending
    from named_senderr.settings.loading import sink_from_url

    config = sink_from_url("victorialogs+http://h:9428?job=dns", {}, "t", None)
    queries = vl_queries(config, window_ending(parse_until(UNTIL), parse_since(SINCE)))
    assert all(
        q.startswith('{job="dns"} _time:[2026-11-20T10:00:00Z, 2026-11-20T11:00:00Z) ') for q in queries.values()
    )
    assert all(" | stats by (" in q for q in queries.values())

"""Every LogsQL query of the VictoriaLogs dashboard, run against a real VictoriaLogs holding the fixture fleet.

Grafana is not started (it is AGPL): each panel's target is sent the way the VictoriaLogs data source
plugin sends it (github.com/VictoriaMetrics/victorialogs-datasource, Apache-2.0, pkg/plugin/query.go
and pkg/utils/utils.go at 9f5a995, v0.30.1+1): Grafana fills ``$job``; the plugin replaces
``$__range`` and ``$__interval`` (utils.go:424-429), puts ``_time:[from, to]`` in front of a ``stats``
query that has no time filter and asks ``/select/logsql/stats_query`` at ``time=to`` (query.go:176-199,
utils.go:622-653), and asks ``/select/logsql/stats_query_range`` with ``start``, ``end`` and the
panel's ``step`` for ``statsRange`` (query.go:202-241). Series are named by the target's legendFormat
(query.go:306-335). Expected numbers come from the fleet's files, as for the Kibana and Loki views.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest

from named_senderr.cli import main
from named_senderr.report.summary import parse_time
from tests.test_dashboards import (
    COMPANION_START,
    COMPANION_UNTIL,
    CONF,
    DROPS_START,
    START,
    companion_log,
    expected,
)
from tests.test_report import FLEET, HOSTS, PEAKS, REASONS, UNTIL
from tests.test_report_drops import HOST as DROPS_HOST
from tests.test_report_drops import LOG as DROPS_LOG
from tests.test_report_drops import UNTIL as DROPS_UNTIL
from tests.test_report_drops import file_summary as drops_summary
from tests.test_ship_victorialogs import count, logsql

pytestmark = pytest.mark.servers
DASHBOARD = CONF / "grafana" / "named-senderr-victorialogs-dashboard.json"
FROM, TO = (int(parse_time(t).timestamp()) for t in (START, UNTIL))
DROPS = tuple(int(parse_time(t).timestamp()) for t in (DROPS_START, DROPS_UNTIL))  # bind-9.18.49's minute
COMPANION = tuple(int(parse_time(t).timestamp()) for t in (COMPANION_START, COMPANION_UNTIL))  # internal_send's
SIGNAL = "UDP drop signal: seconds with drops per server"
LEGEND = re.compile(r"\{\{\s*(.+?)\s*\}\}")  # the plugin's legendReplacer (query.go:306)


@pytest.fixture(scope="module")
def vl_job(victorialogs_url: str, tmp_path_factory) -> str:
    job = f"dash-{uuid.uuid4().hex[:8]}"
    dead = tmp_path_factory.mktemp("dash") / "dead.ndjson"
    url = f"victorialogs+{victorialogs_url}?job={job}"
    assert main(["ship", *FLEET, "--to", url, "--dead-letter", str(dead), "--no-progress"]) == 0
    drops = ["--timezone", "UTC", "--host", DROPS_HOST, "--dead-letter", str(dead), "--no-progress"]
    assert main(["ship", DROPS_LOG, "--to", url, *drops]) == 0
    assert main(["ship", companion_log(tmp_path_factory), "--to", url, *drops]) == 0
    # 69 send failed lines, 1 UDP line, 1 internal_send line
    assert count(victorialogs_url, job) == sum(HOSTS.values()) + 69 + 1 + 1
    return job


def targets(job: str) -> dict[str, dict]:
    """Panel title -> its target, with ``$job`` filled as Grafana fills a dashboard variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: {**p["targets"][0], "expr": p["targets"][0]["expr"].replace("$job", job)}
            for p in dashboard["panels"]}  # fmt: skip


def plugin_expr(expr: str, start: int = FROM, end: int = TO) -> str:
    """utils.ReplaceTemplateVariable for the fleet's hour by default (interval: the one-minute step)."""
    return expr.replace("$__range", f"[{start}, {end}]").replace("$__interval", "1m")


def legend(target: dict, labels: dict[str, str]) -> str:
    return LEGEND.sub(lambda m: labels.get(m[1], ""), target["legendFormat"])


def ask(base: str, path: str, params: dict) -> list[dict]:
    reply = httpx.get(f"{base}/select/logsql/{path}", params=params)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def stats(base: str, target: dict, start: int = FROM, end: int = TO) -> dict[str, int]:
    assert target["queryType"] == "stats"
    expr = plugin_expr(target["expr"], start, end)
    if "_time:" not in expr.split("|")[0]:  # utils.AddTimeFieldWithRange
        expr = f"_time:[{start}, {end}] {expr}"
    results = ask(base, "stats_query", {"query": expr, "time": str(end)})
    return {legend(target, r["metric"]): int(r["value"][1]) for r in results}


def stats_range(base: str, target: dict, start: int = FROM, end: int = TO) -> dict[str, dict[str, int]]:
    """minute -> series -> events; each point is stamped with the start of its step."""
    assert target["queryType"] == "statsRange"
    expr = plugin_expr(target["expr"], start, end)
    params = {"query": expr, "start": str(start), "end": str(end), "step": target["step"]}
    series: dict[str, dict[str, int]] = {}
    for r in ask(base, "stats_query_range", params):
        for stamp, value in r["values"]:
            if int(value):
                minute = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(stamp))
                series.setdefault(minute, {})[legend(target, r["metric"])] = int(value)
    return series


def test_every_panel_asks_the_victorialogs_data_source_for_stats() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["pluginId"] == "victoriametrics-logs-datasource"
    loki = json.loads((CONF / "grafana" / "named-senderr-loki-dashboard.json").read_text())
    assert [p["title"] for p in dashboard["panels"]] == [p["title"] for p in loki["panels"]]
    for target in (t for p in dashboard["panels"] for t in p["targets"]):
        assert target["datasource"]["type"] == "victoriametrics-logs-datasource"
        assert target["queryType"] in ("stats", "statsRange") and " | stats by (" in target["expr"]


def test_dashboard_per_minute_by_reason_matches_the_files(victorialogs_url: str, vl_job: str) -> None:
    target = targets(vl_job)["Send errors per minute by reason"]
    assert stats_range(victorialogs_url, target) == expected().minutes


def test_dashboard_per_server_and_reason_mix_match_the_files(victorialogs_url: str, vl_job: str) -> None:
    panels = targets(vl_job)
    per_server = stats(victorialogs_url, panels["Send errors per server"])
    assert per_server == HOSTS and list(per_server) == list(HOSTS)  # sorted, busiest first
    assert stats(victorialogs_url, panels["Reason mix"]) == REASONS


def test_dashboard_top_ipv4_networks_and_qnames_match_the_files(victorialogs_url: str, vl_job: str) -> None:
    panels, summary = targets(vl_job), expected()
    v4 = [(net, n) for net, n in summary.client_networks if "." in net]
    assert list(stats(victorialogs_url, panels["Top client networks (IPv4 /24)"]).items()) == v4
    assert list(stats(victorialogs_url, panels["Top query names"]).items()) == summary.qnames


def test_dashboard_per_server_series_peaks_where_the_files_do(victorialogs_url: str, vl_job: str) -> None:
    series = stats_range(victorialogs_url, targets(vl_job)["Send errors by server per minute"])
    peaks = {}
    for host in HOSTS:
        minute = min(series, key=lambda m: (-series[m].get(host, 0), m))
        peaks[host] = (minute, series[minute][host])
    assert peaks == PEAKS


def test_a_panel_query_broken_on_purpose_is_caught(victorialogs_url: str, vl_job: str) -> None:
    """The harness fails a wrong query: a misspelt field groups every event under one empty name."""
    target = targets(vl_job)["Reason mix"]
    broken = {**target, "expr": target["expr"].replace("event.reason", "event.reasons")}
    assert stats(victorialogs_url, broken) != REASONS


def test_every_panel_counts_each_drop_once_on_the_9_18_49_log(victorialogs_url: str, vl_job: str) -> None:
    """69 send failed lines and 1 UDP line for the same drops: the panels say 69, as ``report`` does."""
    panels, summary = targets(vl_job), drops_summary()
    by_reason = stats_range(victorialogs_url, panels["Send errors per minute by reason"], *DROPS)
    assert by_reason == summary.minutes == {"2026-11-21T04:48Z": {"would_block": 69}}
    assert stats(victorialogs_url, panels["Send errors per server"], *DROPS) == {DROPS_HOST: 69}
    assert stats(victorialogs_url, panels["Reason mix"], *DROPS) == summary.reasons == {"would_block": 69}
    assert stats(victorialogs_url, panels["Top client networks (IPv4 /24)"], *DROPS) == {}  # an IPv6 client
    assert list(stats(victorialogs_url, panels["Top query names"], *DROPS).items()) == summary.qnames
    per_server = stats_range(victorialogs_url, panels["Send errors by server per minute"], *DROPS)
    assert per_server == {"2026-11-21T04:48Z": {DROPS_HOST: 69}}


def test_udp_drop_signal_panel_shows_the_seconds_with_drops_apart(victorialogs_url: str, vl_job: str) -> None:
    series = stats_range(victorialogs_url, targets(vl_job)[SIGNAL], *DROPS)
    assert (
        series
        == {"2026-11-21T04:48Z": {DROPS_HOST: drops_summary().udp_drop_seconds}}
        == {"2026-11-21T04:48Z": {DROPS_HOST: 1}}
    )
    assert stats_range(victorialogs_url, targets(vl_job)[SIGNAL]) == {}  # the fleet logged none


def test_no_panel_counts_the_internal_send_line(victorialogs_url: str, vl_job: str) -> None:
    """The line is stored (a query for its kind finds it), yet every panel over its minute shows nothing."""
    window = f'_time:[{COMPANION[0]}, {COMPANION[1]}) {{job="{vl_job}"}} bind.message_kind:=internal_send_failed'
    assert logsql(victorialogs_url, f"{window} | stats count() n") == [{"n": "1"}]
    shown = {}
    for title, target in targets(vl_job).items():
        run = stats if target["queryType"] == "stats" else stats_range
        shown[title] = run(victorialogs_url, target, *COMPANION)
    assert shown == {title: {} for title in shown} and len(shown) == 7


def test_every_count_panel_leaves_the_companion_lines_out() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = {p["title"]: p["targets"][0]["expr"] for p in dashboard["panels"]}
    assert exprs.pop(SIGNAL).startswith('{job="$job"} bind.message_kind:=udp_send_failed | ')
    counting = '{job="$job"} -bind.message_kind:in(udp_send_failed, internal_send_failed) '
    assert [t for t, e in exprs.items() if not e.startswith(counting)] == []

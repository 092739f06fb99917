"""The Sigma rule in conf/sigma, checked with the tools a SIEM team uses and run against a real Elasticsearch.

``sigma check`` (sigma-cli) validates the file; pySigma's Elasticsearch backend converts the correlation to
ES|QL and the base rule to Lucene. What was converted runs against the suite's Elasticsearch, which holds a
generated log with known per-host counts. The suite's Elasticsearch (the 8.x integ-test zip) has no ES|QL
plugin, so there the ES|QL test skips, naming the server's answer, and the Lucene base query test is the one
that ran against the server. Nothing here converts Sigma by hand.
"""

from __future__ import annotations

import operator
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sigma.backends.elasticsearch import ESQLBackend, LuceneBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule, SigmaCorrelationType
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import SetStateTransformation
from sigma.rule import SigmaRule

from named_senderr.cli import main
from tests.test_dashboards import RULES

RULE_FILE = Path(__file__).resolve().parent.parent / "conf" / "sigma" / "bind-send-error-spike.yml"
# ES|QL's date_trunc buckets start on multiples of the timespan; the generated log fills one such bucket.
WINDOW_START = datetime(2026, 11, 21, 3, 10, tzinfo=UTC)
IN_WINDOW = {"ns-storm": 150, "ns-over": 101, "ns-at": 100, "ns-calm": 40}
BEFORE_WINDOW = {"ns-at": 60}  # 160 in ten minutes, but only 100 in the rule's five
FIRES = {"ns-storm": 150, "ns-over": 101}
# Drops named also logged per client, at most one line a second: counted, they would lift ns-at over 100.
UDP_SECONDS = {"ns-at": 5}
# The socket code's companion of a client's send failure (a row of tests/data/corpus/bind-send-errors.jsonl,
# in the form these lines use): counted, it would lift ns-at over 100 too.
INTERNAL_SENDS = {"ns-at": 1}
INTERNAL_SEND = "general: error: internal_send: 198.51.100.9#1053: Message too long"
# MITRE's ATT&CK and D3FEND data are downloaded from the internet by these two validators; the test machines
# reach only loopback. Every other validator of sigma-cli runs.
OFFLINE = ["--exclude", "attacktag", "--exclude", "d3_fendtag"]
COMPARE = {
    SigmaCorrelationConditionOperator.GT: operator.gt,
    SigmaCorrelationConditionOperator.GTE: operator.ge,
    SigmaCorrelationConditionOperator.LT: operator.lt,
    SigmaCorrelationConditionOperator.LTE: operator.le,
    SigmaCorrelationConditionOperator.EQ: operator.eq,
    SigmaCorrelationConditionOperator.NEQ: operator.ne,
}


def rules() -> tuple[SigmaRule, SigmaCorrelationRule]:
    base, correlation = SigmaCollection.from_yaml(RULE_FILE.read_text()).rules
    assert isinstance(base, SigmaRule) and isinstance(correlation, SigmaCorrelationRule)
    return base, correlation


def sigma_check(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sigma.cli.main", "check", *OFFLINE, str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def send_error_lines(host: str, count: int, start: datetime, span: timedelta) -> list[tuple[datetime, str]]:
    """``count`` send errors from ``host`` spread evenly over ``span``, alternating the two client messages."""
    lines = []
    for i in range(count):
        at = start + span * i / count
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        client = f"client @0x{i + 1:012x} 192.0.2.{i % 250 + 1}#{1024 + i}"
        message = (
            f"client: warning: {client} (www.example.com): view external: error sending response: would block"
            if i % 2
            else f"security: debug 3: {client} (mail.example.org): view internal: send failed: no pending connections"
        )
        lines.append((at, f"{stamp} {host} named[900]: {message}"))
    return lines


def companion_lines(host: str, seconds: int, start: datetime, message: str) -> list[tuple[datetime, str]]:
    """One companion line (``message``) in each of ``seconds`` seconds."""
    lines = []
    for i in range(seconds):
        at = start + timedelta(seconds=i, milliseconds=250)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines.append((at, f"{stamp} {host} named[900]: {message}"))
    return lines


def udp_lines(host: str, seconds: int, start: datetime) -> list[tuple[datetime, str]]:
    """One ``Sending UDP messages failed`` line in each of ``seconds`` seconds (the 9.18.31+ form)."""
    return companion_lines(host, seconds, start, "general: error: Sending UDP messages failed: no pending connections")


def write_log(path: Path, span: timedelta) -> None:
    lines = [line for host, n in IN_WINDOW.items() for line in send_error_lines(host, n, WINDOW_START, span)]
    lines += [line for host, n in UDP_SECONDS.items() for line in udp_lines(host, n, WINDOW_START)]
    lines += [
        line for host, n in INTERNAL_SENDS.items() for line in companion_lines(host, n, WINDOW_START, INTERNAL_SEND)
    ]
    lines += [
        line for host, n in BEFORE_WINDOW.items() for line in send_error_lines(host, n, WINDOW_START - span, span)
    ]
    path.write_text("".join(f"{text}\n" for _, text in sorted(lines)))


@pytest.fixture(scope="module")
def sigma_index(elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An index holding the generated log, shipped by ``named-senderr ship``."""
    folder = tmp_path_factory.mktemp("sigma")
    log = folder / "named.log"
    write_log(log, timedelta(seconds=rules()[1].timespan.seconds))
    index = f"named-senderr-sigma-{uuid.uuid4().hex[:8]}"
    url = f"elasticsearch+{elasticsearch_url}/{index}"
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    assert main(["ship", str(log), "--to", url, "--dead-letter", str(folder / "dead.ndjson"), "--no-progress"]) == 0
    httpx.post(f"{elasticsearch_url}/{index}/_refresh").raise_for_status()
    return index


def test_sigma_check_passes_with_no_errors_and_no_condition_errors() -> None:
    result = sigma_check(RULE_FILE)
    assert result.returncode == 0 and "Found 0 errors, 0 condition errors and 0 issues." in result.stdout, (
        result.stdout + result.stderr
    )


def test_sigma_check_refuses_the_removed_pipe_aggregation(tmp_path: Path) -> None:
    """The rule's old form: the check above can fail, and does on what Sigma removed."""
    base = RULE_FILE.read_text().split("\n---\n")[0]
    condition = next(line for line in base.splitlines() if line.startswith("  condition: "))
    old = base.replace(condition, f"  timeframe: 5m\n{condition} | count() by host.name > 100")
    (tmp_path / "old.yml").write_text(old)
    result = sigma_check(tmp_path / "old.yml")
    assert result.returncode != 0 and "Found 0 errors, 1 condition errors" in result.stdout, result.stdout


def test_rule_is_an_event_count_over_five_minutes_by_host_above_100() -> None:
    """The numbers the Loki alert rules and the generated log below rely on."""
    base, correlation = rules()
    assert (correlation.type, correlation.group_by, correlation.timespan.spec) == (
        SigmaCorrelationType.EVENT_COUNT,
        ["host.name"],
        "5m",
    )
    assert (correlation.condition.op, correlation.condition.count) == (SigmaCorrelationConditionOperator.GT, 100)
    assert [ref.reference for ref in correlation.rules] == [base.name]


def esql_query(index: str) -> str:
    pipeline = ProcessingPipeline(items=[ProcessingItem(SetStateTransformation("index", index))])
    (query,) = ESQLBackend(pipeline).convert(SigmaCollection.from_yaml(RULE_FILE.read_text()))
    return query


def test_correlation_converts_to_esql_counting_each_host_per_5_minute_bucket() -> None:
    query = esql_query("named-senderr-*")
    assert query.startswith("from named-senderr-* ") and "date_trunc(5minutes, @timestamp)" in query, query
    assert "by timebucket, host.name" in query and query.endswith("| where event_count > 100"), query


def test_esql_correlation_fires_for_each_host_over_the_threshold(elasticsearch_url: str, sigma_index: str) -> None:
    probe = httpx.post(f"{elasticsearch_url}/_query", json={"query": "ROW a = 1"})
    if probe.status_code != 200:
        pytest.skip(
            f"this Elasticsearch has no ES|QL (POST /_query answered {probe.status_code}: {probe.text[:120]}); "
            "test_lucene_base_query_counts_each_host_in_the_rules_window ran the Lucene base query instead"
        )
    reply = httpx.post(f"{elasticsearch_url}/_query", json={"query": esql_query(sigma_index)}, timeout=60)
    assert reply.status_code == 200, reply.text
    columns = [c["name"] for c in reply.json()["columns"]]
    rows = [dict(zip(columns, values, strict=True)) for values in reply.json()["values"]]
    assert {r["host.name"]: r["event_count"] for r in rows} == FIRES
    assert {r["timebucket"] for r in rows} == {WINDOW_START.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


def test_lucene_base_query_counts_each_host_in_the_rules_window(elasticsearch_url: str, sigma_index: str) -> None:
    """The base rule's Lucene, over the correlation's timespan, grouped by its group-by, held to its condition."""
    base, correlation = rules()
    (lucene,) = LuceneBackend().convert_rule(SigmaRule.from_dict(base.to_dict()))  # a fresh copy: not only a part
    end = WINDOW_START + timedelta(seconds=correlation.timespan.seconds)
    window = {"gte": WINDOW_START.isoformat(), "lt": end.isoformat()}
    (field,) = correlation.group_by or []
    body = {
        "size": 0,
        "query": {"bool": {"filter": [{"query_string": {"query": lucene}}, {"range": {"@timestamp": window}}]}},
        "aggs": {"by": {"terms": {"field": field, "size": 100}}},
    }
    reply = httpx.post(f"{elasticsearch_url}/{sigma_index}/_search", json=body)
    assert reply.status_code == 200, reply.text
    counts = {b["key"]: b["doc_count"] for b in reply.json()["aggregations"]["by"]["buckets"]}
    fires = COMPARE[correlation.condition.op]
    assert counts == IN_WINDOW
    assert {h: n for h, n in counts.items() if fires(n, correlation.condition.count)} == FIRES


def test_base_rule_leaves_out_both_companion_kinds() -> None:
    """The base query pySigma converts names both kinds (the Lucene test above shows what they would add)."""
    (lucene,) = LuceneBackend().convert_rule(SigmaRule.from_dict(rules()[0].to_dict()))
    assert lucene.endswith("(NOT (bind.message_kind:(udp_send_failed OR internal_send_failed)))"), lucene


def test_alert_rules_use_the_window_and_threshold_of_the_sigma_rule() -> None:
    """The Sigma rule's numbers are asserted against the real Elasticsearch above; the Loki rules that count
    send errors (all but the UDP drop signal's, tests/test_dashboards.py) must agree."""
    correlation = rules()[1]
    assert correlation.condition.op == SigmaCorrelationConditionOperator.GT
    counting = [rule for rule in RULES if 'message_kind="udp_send_failed"' not in rule["expr"]]
    assert len(counting) == len(RULES) - 1 == 2
    for rule in counting:
        window, threshold = f"[{correlation.timespan.spec}]", f"> {correlation.condition.count}"
        assert window in rule["expr"] and rule["expr"].endswith(threshold), rule["alert"]

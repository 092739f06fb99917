"""The LogQL harness: Grafana's grammar finds errors, and variables are filled the way Grafana fills them."""

from __future__ import annotations

import json
from datetime import timedelta

from tests import logql

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
LOCK = json.loads((logql.HERE / "package-lock.json").read_text())["packages"]


def fill(expr: str, query_type: str = "range", time_range: timedelta = HOUR, interval: timedelta = HOUR) -> str:
    return logql.interpolate(expr, query_type=query_type, time_range=time_range, interval=interval)


def test_a_query_broken_on_purpose_fails_the_check() -> None:
    (parsed,) = logql.parse(['sum by (host (count_over_time({job="x"}[1m]))'])
    assert not parsed.ok and parsed.errors[0][0] == len("sum by (host ")


def test_a_valid_metric_query_parses_as_a_metric_expression() -> None:
    (parsed,) = logql.parse(['sum by (host) (count_over_time({job="x"} | qname!="" [5m])) > 100'])
    assert parsed.ok and parsed.kind == "MetricExpr", parsed.explain()


def test_a_negative_regex_matcher_on_the_companion_kinds_parses_and_reads_message_kind() -> None:
    """The dashboards' and rules' count selector: ``!~`` with an alternation, not a second ``!=``."""
    (parsed,) = logql.parse(
        ['sum(count_over_time({job="x", message_kind!~"udp_send_failed|internal_send_failed"}[5m]))']
    )
    assert parsed.ok and parsed.kind == "MetricExpr" and "message_kind" in parsed.labels_read, parsed.explain()


def test_a_log_query_parses_as_a_log_expression() -> None:
    (parsed,) = logql.parse(['{job="x"} | client_ip=~"[0-9.]+"'])
    assert parsed.ok and parsed.kind == "LogExpr", parsed.explain()


def test_an_empty_query_is_an_error() -> None:
    (parsed,) = logql.parse([""])
    assert not parsed.ok


def test_rate_interval_is_not_filled_for_loki_and_fails_the_grammar() -> None:
    expr = fill('sum(count_over_time({job="x"}[$__rate_interval]))')
    (parsed,) = logql.parse([expr])
    assert logql.leftover_variables(expr) == ["$__rate_interval"] and not parsed.ok


def test_range_is_whole_seconds_rounded_in_every_spelling() -> None:
    expr = "[$__range] [${__range}] $__range_s $__range_ms"
    assert fill(expr, time_range=timedelta(seconds=90, milliseconds=600)) == "[91s] [91s] 91 90600"


def test_interval_keeps_only_the_largest_whole_unit() -> None:
    cases = {timedelta(seconds=90): "1m", timedelta(hours=2, minutes=30): "2h", timedelta(milliseconds=500): "500ms"}
    assert {i: fill("$__interval", interval=i) for i in cases} == cases
    assert fill("$__interval_ms ${__interval}", interval=timedelta(seconds=90)) == "90000 1m"


def test_auto_is_the_range_for_instant_queries_and_the_step_for_range_queries() -> None:
    assert fill("[$__auto]", "instant", DAY, timedelta(minutes=1)) == "[86400s]"
    assert fill("[$__auto]", "range", DAY, timedelta(minutes=1)) == "[1m]"
    # the step is at least range / 11000: 30 days / 11000 = 235.637 s, shown as 3m
    assert fill("[$__auto]", "range", 30 * DAY, timedelta(milliseconds=1)) == "[3m]"


def test_single_value_variable_goes_in_as_written() -> None:
    expr = logql.interpolate(
        '{job="$job", host="${host}"}', query_type="range", time_range=HOUR, interval=HOUR,
        variables={"job": "named-senderr", "host": "ns1.example"},
    )  # fmt: skip
    assert expr == '{job="named-senderr", host="ns1.example"}'


def test_multi_value_variable_is_regex_escaped_and_joined_with_a_bar() -> None:
    expr = logql.interpolate(
        'count_over_time({host=~"$host"}[1m])', query_type="range", time_range=HOUR, interval=HOUR,
        multi={"host": ["ns1.example", "ns(2)"]},
    )  # fmt: skip
    (parsed,) = logql.parse([expr])
    assert expr == r'count_over_time({host=~"ns1\\.example|ns\\(2\\)"}[1m])' and parsed.ok, parsed.explain()


def test_unknown_variable_stays_as_written_and_is_reported() -> None:
    expr = fill('{job="$nosuch"}')
    assert expr == '{job="$nosuch"}' and logql.leftover_variables(expr) == ["$nosuch"]


def test_lock_pins_grafanas_grammar_with_only_apache_or_mit_packages() -> None:
    packages = {path.removeprefix("node_modules/"): meta for path, meta in LOCK.items() if path}
    assert packages["@grafana/lezer-logql"]["version"] == "0.4.2"
    assert {p: m["license"] for p, m in packages.items()} == {
        "@grafana/lezer-logql": "Apache-2.0", "@lezer/lr": "MIT", "@lezer/common": "MIT",
    }  # fmt: skip
    assert all(m["integrity"].startswith("sha512-") for m in packages.values())


def test_installed_grammar_is_the_locked_version() -> None:
    installed = logql.require_grammar() / "node_modules" / "@grafana" / "lezer-logql" / "package.json"
    meta = json.loads(installed.read_text())
    assert (meta["version"], meta["license"]) == (LOCK["node_modules/@grafana/lezer-logql"]["version"], "Apache-2.0")

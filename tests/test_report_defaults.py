"""report's defaults show the data: a file's window is its events' span, globs expand, a missing file is an
error, a store says what lies outside its window, file-channel servers get a name, rates run over each
server's active span, and the chart's time axis names each time once.

The bundled sample (a file channel: no host in its lines, all 39 send errors in the minute 04:48 of
2026-11-21) and the fixture fleet (tests/data/fleet: 1,522 events of four servers, 10:00 to 10:59 on
2026-11-20) are the data; the stores are the real Elasticsearch, OpenSearch and VictoriaLogs, and Loki the
documented answers of ``tests/test_report.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.cli.report import parse_since, parse_until, summarize
from named_senderr.report import render
from named_senderr.report.summary import Outside, Summary, Tallies, Window, build
from named_senderr.sources.files import SAMPLE_LOG
from tests.faults import FaultServer
from tests.polling import wait_until
from tests.test_report import FLEET, HOSTS, fleet_tallies, numbers, scripted_loki, ship_fleet

SAMPLE = str(SAMPLE_LOG)
FLEET_GLOB = str(Path(FLEET[0]).parent / "*.log")
SAMPLE_EVENTS = 39  # grep -cE 'error sending|send failed' plugin/named_senderr/samples/named.log
# A window of 10 minutes inside the fleet's hour: 611 events before it, 716 after it (counted from the files).
INSIDE_SINCE, INSIDE_UNTIL = "10m", "2026-11-20T10:30:00Z"
INSIDE = Outside(611, 716, "2026-11-20T10:00Z", "2026-11-20T10:59Z", "--since 1h --until 2026-11-20T11:00:00Z")
DAY_AFTER = "2026-11-21T11:00:00Z"  # "now" a day after the fleet: the store's default window holds none of it


def report_json(args: list[str], capsys) -> dict:
    assert main(["report", *args, "--timezone", "UTC", "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


# --- 4: the window ------------------------------------------------------------------------------------------


def test_file_report_defaults_to_the_events_own_span(capsys) -> None:
    data = report_json(["--from", SAMPLE], capsys)
    assert data["events"] == SAMPLE_EVENTS
    assert (data["start"], data["end"], data["basis"]) == (
        "2026-11-21T04:48:00Z",
        "2026-11-21T04:49:00Z",
        "the events' own span",
    )


def test_fleet_report_without_a_window_equals_its_hour() -> None:
    default, hour = (
        summarize(FLEET, None, None),
        summarize(FLEET, parse_since("1h"), parse_until("2026-11-20T11:00:00Z")),
    )
    assert {**numbers(default), "basis": ""} == {**numbers(hour), "basis": ""} and default.events == sum(HOSTS.values())


def test_since_alone_counts_back_from_the_files_last_event() -> None:
    summary = summarize(FLEET, parse_since("20m"), None)
    assert (summary.start, summary.end) == ("2026-11-20T10:40:00Z", "2026-11-20T11:00:00Z")
    assert summary.outside.before == sum(HOSTS.values()) - summary.events and summary.outside.after == 0


def test_file_window_names_the_events_outside_it_and_the_options_that_show_them(capsys) -> None:
    assert main(["report", "--from", *FLEET, "--since", INSIDE_SINCE, "--until", INSIDE_UNTIL]) == 0
    out = capsys.readouterr().out
    assert "note: 1,327 events lie outside the window, 611 before it (from 2026-11-20T10:00Z) and 716 after it" in out
    assert out.rstrip().endswith("--since 1h --until 2026-11-20T11:00:00Z shows them")


def test_the_suggested_options_show_every_event() -> None:
    options = summarize(FLEET, *window(INSIDE_SINCE, INSIDE_UNTIL)).outside.options
    assert options is not None
    _, since, _, until = options.split()
    summary = summarize(FLEET, *window(since, until))
    assert summary.events == sum(HOSTS.values()) and summary.outside == Outside()


def test_help_states_the_window_defaults_and_what_from_takes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--from URL|FILE [URL|FILE ...] named log files or globs (quoted), or one store URL" in out
    assert "(default: files from their first event, stores 24h)" in out
    assert "(default: files their last event, stores now)" in out


def test_loki_default_window_counts_the_events_before_it_and_the_options() -> None:
    """The scripted Loki's instant answers hold every event whatever the window: only what lies outside is checked."""
    with FaultServer(scripted_loki(fleet_tallies())) as loki:
        summary = summarize([f"loki+{loki.url}?job=named-senderr"], None, None, now=parse_until(DAY_AFTER))
    assert summary.basis == "--since/--until (default --since 24h, --until now)"
    assert summary.outside == Outside(sum(HOSTS.values()), 0, "2026-11-20T10:00Z", None,
                                      f"--since 25h --until {DAY_AFTER}")  # fmt: skip


def test_loki_counts_events_before_and_after_the_window_as_the_files_do() -> None:
    """Loki's side is counted by the hour: the counts are exact, the first and last an hour wide at most."""
    with FaultServer(scripted_loki(fleet_tallies())) as loki:
        outside = summarize([f"loki+{loki.url}?job=named-senderr"], *window(INSIDE_SINCE, INSIDE_UNTIL)).outside
    assert (outside.before, outside.after) == (INSIDE.before, INSIDE.after)
    assert INSIDE.first and INSIDE.last and outside.first and outside.last
    assert "2026-11-20T09:00Z" <= outside.first <= INSIDE.first and INSIDE.last <= outside.last <= "2026-11-20T11:59Z"


def window(since: str, until: str) -> tuple:
    return parse_since(since), parse_until(until)


@pytest.fixture(scope="module", params=["elasticsearch", "opensearch", "victorialogs"])
def fleet_store(request, tmp_path_factory) -> Iterator[str]:
    """A store holding the fleet, shipped once per kind for this module's store tests."""
    kind, base = request.param, request.getfixturevalue(f"{request.param}_url")
    tag = uuid.uuid4().hex[:8]
    url = f"victorialogs+{base}?job=defaults-{tag}" if kind == "victorialogs" else f"{kind}+{base}/defaults-{tag}"
    if kind != "victorialogs":
        assert main(["setup", "elasticsearch", "--to", url]) == 0
    ship_fleet(tmp_path_factory.mktemp(kind), url)
    everything = window("1h", "2026-11-20T11:00:00Z")
    wait_until(lambda: summarize([url], *everything).events == sum(HOSTS.values()), timeout=15)
    yield url


@pytest.mark.servers
def test_store_default_window_counts_the_events_before_it_and_the_options(fleet_store: str) -> None:
    summary = summarize([fleet_store], None, None, now=parse_until(DAY_AFTER))
    assert summary.events == 0
    assert summary.outside == Outside(sum(HOSTS.values()), 0, "2026-11-20T10:00Z", None,
                                      f"--since 25h --until {DAY_AFTER}")  # fmt: skip


@pytest.mark.servers
def test_store_counts_events_before_and_after_the_window_as_the_files_do(fleet_store: str) -> None:
    summary = summarize([fleet_store], *window(INSIDE_SINCE, INSIDE_UNTIL))
    assert summary.outside == INSIDE and numbers(summary) == numbers(
        summarize(FLEET, *window(INSIDE_SINCE, INSIDE_UNTIL))
    )


# --- 5: globs and missing files -----------------------------------------------------------------------------


def test_quoted_glob_reads_every_file_it_matches(capsys) -> None:
    data = report_json(["--from", FLEET_GLOB], capsys)
    assert data["events"] == sum(HOSTS.values()) and data["sources"] == FLEET


def test_glob_matching_nothing_exits_1_naming_the_glob(tmp_path: Path, capsys) -> None:
    pattern = str(tmp_path / "*.log")
    assert main(["report", "--from", pattern]) == 1
    assert f"--from {pattern!r}: no file matches this glob" in capsys.readouterr().err


def test_missing_file_exits_1_naming_the_path(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "named.log"
    assert main(["report", "--from", SAMPLE, str(missing)]) == 1
    captured = capsys.readouterr()
    assert f"--from {missing}: no such file; check the path" in captured.err and captured.out == ""


# --- 6: servers, rates, the time axis -----------------------------------------------------------------------


def test_file_channel_server_is_the_files_name(capsys) -> None:
    data = report_json(["--from", SAMPLE], capsys)
    assert [(h["host"], h["events"]) for h in data["hosts"]] == [("named.log", SAMPLE_EVENTS)]


def test_host_option_names_the_server_of_lines_without_one(capsys) -> None:
    data = report_json(["--from", SAMPLE, "--host", "ns9"], capsys)
    assert [h["host"] for h in data["hosts"]] == ["ns9"]


def test_host_option_leaves_a_logged_host_alone(capsys) -> None:
    data = report_json(["--from", *FLEET, "--host", "ns9"], capsys)
    assert {h["host"]: h["events"] for h in data["hosts"]} == HOSTS


def test_server_rate_is_over_its_active_span_not_the_window() -> None:
    summary = summarize(FLEET, parse_since("30d"), parse_until("2026-11-20T11:00:00Z"))
    ns1 = next(h for h in summary.hosts if h.host == "ns1")
    assert (ns1.first_minute, ns1.last_minute, ns1.active_minutes) == ("2026-11-20T10:00Z", "2026-11-20T10:59Z", 60)
    assert ns1.per_minute == round(512 / 60, 3)


def test_terminal_prints_the_rate_with_its_span(capsys) -> None:
    assert main(["report", "--from", SAMPLE, "--timezone", "UTC"]) == 0
    assert (
        "named.log             39 events     39.00/min over 1 min  peak 2026-11-21T04:48Z (39)"
        in capsys.readouterr().out
    )


def axis_labels(summary: Summary) -> list[str]:
    import matplotlib.pyplot as plt

    figure = render.chart(summary)
    figure.canvas.draw()
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    plt.close(figure)
    return labels


def test_plot_time_axis_names_each_time_once_over_one_minute() -> None:
    labels = axis_labels(summarize([SAMPLE], None, None, "UTC"))
    assert labels == ["04:48", "04:49"]


def test_plot_time_axis_names_each_time_once_over_days() -> None:
    tallies = Tallies()
    for day in ("18", "19", "20"):
        tallies.minute_reason[f"2026-11-{day}T10:00Z", "would_block"] = 5
        tallies.host_reason["ns1", "would_block"] += 5
    labels = axis_labels(
        build("t", Window(*[parse_until(t) for t in ("2026-11-18T00:00:00Z", "2026-11-21T00:00:00Z")]), tallies)
    )
    assert len(labels) >= 2 and len(labels) == len(set(labels))

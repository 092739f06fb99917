"""report counts each drop once: a real BIND 9.18.49 log, from the file and from every store.

In tests/data/real-named/bind-9.18.49-named.log, named dropped answers to one client and logged each
as ``send failed: no pending connections`` (69 lines) and, for the same drops, one ``Sending UDP
messages failed: no pending connections`` (named logs that at most once a second: report/summary.py).
The report must say 69 send errors, and beside them 1 second with drops, never 70, in the terminal, in
``--json``, on the HTML page, and from Elasticsearch, OpenSearch, VictoriaLogs (real servers) and Loki
(its documented answers on a scripted loopback server, tests/test_report.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.cli.report import parse_since, parse_until, summarize
from named_senderr.report.summary import Summary, window_ending
from tests.faults import FaultServer
from tests.test_report import kind_tallies, numbers, poll_summary, scripted_loki
from tests.test_report_html import Page, browse

LOG = str(Path(__file__).resolve().parent / "data" / "real-named" / "bind-9.18.49-named.log")
HOST = "ns-9-18"  # the file channel logs no host: the same name for the file and the stores
SINCE, UNTIL = "1m", "2026-11-21T04:49:00Z"
CLIENT_EVENTS, UDP_SECONDS = 69, 1


def file_summary() -> Summary:
    return summarize([LOG], parse_since(SINCE), parse_until(UNTIL), "UTC", HOST)


def store_summary(sources: list[str]) -> Summary:
    return summarize(sources, parse_since(SINCE), parse_until(UNTIL))


def test_file_report_counts_69_send_errors_and_1_second_with_udp_drops() -> None:
    summary = file_summary()
    assert (summary.events, summary.reasons, summary.udp_drop_seconds) == (
        CLIENT_EVENTS,
        {"would_block": CLIENT_EVENTS},
        UDP_SECONDS,
    )
    (host,) = summary.hosts
    assert (host.host, host.events, host.peak_events, host.udp_drop_seconds) == (HOST, 69, 69, 1)
    assert sum(sum(m.values()) for m in summary.minutes.values()) == sum(n for _, n in summary.qnames) == 69


def test_terminal_says_69_events_and_the_udp_signal_beside_them(capsys) -> None:
    args = ["report", "--from", LOG, "--timezone", "UTC", "--host", HOST, "--since", SINCE, "--until", UNTIL]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{LOG}: 69 events\n" in out and "UDP drop signal: 1 second with drops" in out
    assert "69 events" in out.splitlines()[3] and out.splitlines()[3].endswith("UDP drops in 1 s")
    assert "70" not in out


def test_json_has_69_events_and_the_udp_seconds_in_fields_of_their_own(capsys) -> None:
    args = ["report", "--from", LOG, "--timezone", "UTC", "--host", HOST, "--json"]
    assert main(args) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert (data["events"], data["udp_drop_seconds"]) == (69, 1)
    assert [(h["host"], h["events"], h["udp_drop_seconds"]) for h in data["hosts"]] == [(HOST, 69, 1)]


def test_html_page_shows_the_udp_signal_beside_the_event_count(tmp_path: Path) -> None:
    out = tmp_path / "drops.html"
    assert main(["report", "--from", LOG, "--timezone", "UTC", "--host", HOST, "--html", str(out)]) == 0
    dom = Page(browse(tmp_path, out.as_uri(), "--dump-dom").stdout.decode())
    row = dom.text[f"host-{HOST}"]
    assert row.startswith(f"{HOST}691") and "69.0/min" in row, row  # server, events 69, UDP drop seconds 1
    text = out.read_text()
    assert 'UDP drop signal</div><div class="value">1 s</div>' in text and '<td class="num udp">1</td>' in text
    assert '<div class="label">events</div><div class="value">69</div>' in text


def test_a_log_with_only_the_udp_line_still_names_its_server(tmp_path: Path) -> None:
    """Without debug 3 logging named writes no per-client line: the UDP line is then the only trace."""
    only = tmp_path / "udp-only.log"
    only.write_text("".join(line for line in Path(LOG).read_text().splitlines(keepends=True) if "Sending UDP" in line))
    summary = summarize([str(only)], None, None, "UTC", HOST)
    assert (summary.events, summary.udp_drop_seconds) == (0, 1)
    assert [(h.host, h.events, h.udp_drop_seconds) for h in summary.hosts] == [(HOST, 0, 1)]


def ship(url: str, tmp_path: Path) -> None:
    args = ["--timezone", "UTC", "--host", HOST, "--dead-letter", str(tmp_path / "dead.ndjson"), "--no-progress"]
    assert main(["ship", LOG, "--to", url, *args]) == 0


@pytest.mark.servers
@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
def test_search_store_counts_69_events_and_1_udp_second(kind: str, request, tmp_path: Path) -> None:
    url = f"{kind}+{request.getfixturevalue(f'{kind}_url')}/named-senderr-drops-{uuid.uuid4().hex[:8]}"
    assert main(["setup", "elasticsearch", "--to", url]) == 0
    ship(url, tmp_path)
    expected = numbers(file_summary())
    summary = poll_summary(url, expected, store_summary)
    assert numbers(summary) == expected and (summary.events, summary.udp_drop_seconds) == (69, 1)


@pytest.mark.servers
@pytest.mark.parametrize("form", ["ecs", "flat"])
def test_victorialogs_counts_69_events_and_1_udp_second(form: str, victorialogs_url: str, tmp_path: Path) -> None:
    url = f"victorialogs+{victorialogs_url}?job=drops-{uuid.uuid4().hex[:8]}&format={form}"
    ship(url, tmp_path)
    expected = numbers(file_summary())
    summary = poll_summary(url, expected, store_summary)
    assert numbers(summary) == expected and (summary.events, summary.udp_drop_seconds) == (69, 1)


def test_loki_counts_69_events_and_1_udp_second_from_documented_answers() -> None:
    """The scripted Loki holds one stream per message_kind label; a query without the matcher would get 70."""
    window = window_ending(parse_until(UNTIL), parse_since(SINCE))
    with FaultServer(scripted_loki(kind_tallies([LOG], window, "UTC", HOST))) as loki:
        found = store_summary([f"loki+{loki.url}?job=named-senderr"])
    assert numbers(found) == numbers(file_summary()) and (found.events, found.udp_drop_seconds) == (69, 1)


# The socket code's companion lines (9.2-9.8 file channel): the errno behind the client's failure, then the failure.
SOCKET_ERA = (
    "14-Mar-2006 10:11:12.340 general: error: socket.c:1098: unexpected error:\n"
    "14-Mar-2006 10:11:12.340 general: error: internal_send: 198.51.100.9#1053: Message too long\n"
    "14-Mar-2006 10:11:12.341 client: warning: client 198.51.100.9#1053: error sending response: unexpected error\n"
)
SOCKET_SINCE, SOCKET_UNTIL = "5m", "2006-03-14T10:13:00Z"


def test_internal_send_line_is_not_counted_beside_the_failure_it_explains(tmp_path: Path) -> None:
    log = tmp_path / "socket-era.log"
    log.write_text(SOCKET_ERA)
    summary = summarize([str(log)], None, None, "UTC", HOST)
    assert (summary.events, summary.reasons, summary.udp_drop_seconds) == (1, {"unclassified": 1}, 0)


def test_loki_leaves_the_internal_send_stream_out_of_the_counts(tmp_path: Path) -> None:
    log = tmp_path / "socket-era.log"
    log.write_text(SOCKET_ERA)
    window = window_ending(parse_until(SOCKET_UNTIL), parse_since(SOCKET_SINCE))
    with FaultServer(scripted_loki(kind_tallies([str(log)], window, "UTC", HOST))) as loki:
        found = summarize([f"loki+{loki.url}?job=named-senderr"], parse_since(SOCKET_SINCE), parse_until(SOCKET_UNTIL))
    assert (found.events, found.reasons) == (1, {"unclassified": 1})


@pytest.mark.servers
@pytest.mark.parametrize("kind", ["elasticsearch", "victorialogs"])
def test_store_leaves_the_internal_send_line_out_of_the_counts(kind: str, request, tmp_path: Path) -> None:
    """Both lines are stored (the destination as an ``ip``); only the client's failure is counted."""
    log = tmp_path / "socket-era.log"
    log.write_text(SOCKET_ERA)
    base = request.getfixturevalue(f"{kind}_url")
    name = f"socket-era-{uuid.uuid4().hex[:8]}"
    url = f"elasticsearch+{base}/named-senderr-{name}" if kind == "elasticsearch" else f"victorialogs+{base}?job={name}"
    if kind == "elasticsearch":
        assert main(["setup", "elasticsearch", "--to", url]) == 0
    args = ["--timezone", "UTC", "--host", HOST, "--dead-letter", str(tmp_path / "dead.ndjson"), "--no-progress"]
    assert main(["ship", str(log), "--to", url, *args]) == 0
    dead = tmp_path / "dead.ndjson"
    assert not dead.exists() or dead.read_bytes() == b""  # the store took both events, destination.ip included
    expected = numbers(summarize([str(log)], parse_since(SOCKET_SINCE), parse_until(SOCKET_UNTIL), "UTC", HOST))

    def summary_of(sources: list[str]) -> Summary:
        return summarize(sources, parse_since(SOCKET_SINCE), parse_until(SOCKET_UNTIL))

    found = poll_summary(url, expected, summary_of)
    assert numbers(found) == expected and (found.events, found.reasons) == (1, {"unclassified": 1})

"""report --html: the fixture fleet's page, rendered by a real Chromium, shows every server, reason and hint.

Chromium is Debian's ``chromium`` in headless mode (``.ci/run`` installs it): the page is
screenshotted (kept under the test's tmp_path, its path printed) and its DOM dumped after
layout, so the numbers are checked in what a browser built, not in the string we wrote.
Outside CI a missing chromium skips with the reason; under CI=true it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from named_senderr.cli import main
from named_senderr.reasons import HINTS
from named_senderr.report.counters import tally_counters
from named_senderr.report.html import page
from named_senderr.report.summary import Tallies, Window, build, parse_time
from tests.test_report import FLEET, HOSTS, PEAKS, REASONS, SINCE, UNTIL

SERIES = str(Path(FLEET[0]).parent / "hostcheck.ndjson")
WINDOW = Window(parse_time("2026-11-20T10:00:00Z"), parse_time(UNTIL))
HOSTILE = "<script>alert`1`</script>\"'&<i>x</i>"
ESCAPED = "&lt;script&gt;alert`1`&lt;/script&gt;&quot;&#x27;&amp;&lt;i&gt;x&lt;/i&gt;"


class Page(HTMLParser):
    """Tags seen, and the text of every element with an id (rows keyed ``host-ns1``, ``reason-would_block``)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        if tag in ("tr", "section"):
            self._open.append((tag, dict(attrs).get("id")))

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, key in self._open:
            if key:
                self.text[key] = self.text.get(key, "") + data


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    message = "chromium not installed (apt-get install -y chromium): the page cannot be checked in a browser"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def browse(tmp_path: Path, url: str, *flags: str) -> subprocess.CompletedProcess:
    """One headless Chromium run with its own profile, bounded in time."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1900", *flags, url]  # fmt: skip
    return subprocess.run(command, capture_output=True, timeout=120, check=True)


def fleet_page(tmp_path: Path) -> Path:
    out = tmp_path / "fleet.html"
    assert main(["report", "--from", *FLEET, SERIES, "--since", SINCE, "--until", UNTIL, "--html", str(out)]) == 0
    return out


def test_chromium_renders_every_server_reason_and_hint_with_its_number(tmp_path: Path, capsys) -> None:
    html = fleet_page(tmp_path)
    shot = tmp_path / "fleet.png"
    browse(tmp_path, html.as_uri(), f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    with capsys.disabled():
        print(f"\nreport --html screenshot: {shot}")
    dom = Page(browse(tmp_path, html.as_uri(), "--dump-dom").stdout.decode())
    for host, events in HOSTS.items():
        minute, peak = PEAKS[host]
        row = dom.text[f"host-{host}"]
        assert host in row and f"{events:,}" in row and f"{minute[11:16]} {peak:,}" in row, row
    for reason, events in REASONS.items():
        row = dom.text[f"reason-{reason}"]
        assert reason in row and f"{events:,}" in row and HINTS[reason] in row, row


def test_chromium_shows_the_kernel_counter_beside_the_log_count(tmp_path: Path) -> None:
    dom = Page(browse(tmp_path, fleet_page(tmp_path).as_uri(), "--dump-dom").stdout.decode())
    ns1, ns3 = dom.text["counters-ns1"], dom.text["counters-ns3"]
    assert "412 100 %" in ns1 and "(a)" in ns1 and "wmem_max" in ns1  # 9.11: kernel counts every would-block
    assert "3 1 %" in ns3 and "413 100 %" in ns3 and "(b)" in ns3  # 9.18: named counts them, the kernel not


def test_chromium_prints_the_page_to_pdf(tmp_path: Path) -> None:
    pdf = tmp_path / "fleet.pdf"
    browse(tmp_path, fleet_page(tmp_path).as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-" and 1 <= data.count(b"/Type /Page\n") + data.count(b"/Type /Page>") <= 4


def test_hostile_qname_in_a_log_line_stays_text(tmp_path: Path) -> None:
    log = tmp_path / "hostile.log"
    log.write_text(
        "2026-11-20T10:00:01.500Z ns9 named[1]: client: warning: client @0x7f01 198.51.100.7#5300 "
        f"({HOSTILE}): view external: error sending response: would block\n"
    )
    out = tmp_path / "hostile.html"
    assert main(["report", "--from", str(log), "--since", "1h", "--until", UNTIL, "--html", str(out)]) == 0
    text = out.read_text()
    assert {"script", "i"}.isdisjoint(Page(text).tags)
    assert ESCAPED in text


def test_hostile_values_from_a_store_stay_text_everywhere() -> None:
    """A store hands over whatever was indexed: host, reason, view and source name must not become markup."""
    tallies = Tallies()
    tallies.host_reason[HOSTILE, HOSTILE] = 3
    tallies.minute_reason["2026-11-20T10:05Z", HOSTILE] = 3
    tallies.host_minute[HOSTILE, "2026-11-20T10:05Z"] = 3
    tallies.qname[HOSTILE] = tallies.view[HOSTILE] = 3
    tallies.bounded.append(HOSTILE)
    summary = build(HOSTILE, WINDOW, tallies)
    text = page(replace(summary, sources=[HOSTILE]))
    assert {"script", "i"}.isdisjoint(Page(text).tags)
    assert HOSTILE not in text and text.count(ESCAPED) >= 8


def test_page_is_self_contained_printable_and_without_script(tmp_path: Path) -> None:
    text = fleet_page(tmp_path).read_text()
    parsed = Page(text)
    assert not {"script", "link", "img", "iframe", "object"} & set(parsed.tags)
    assert not [v for k, v in parsed.attrs if k in ("src", "href") or (v and "://" in v)]
    assert parsed.tags.count("style") == 1 and "@media print" in text and "url(" not in text


def test_empty_window_page_says_there_are_no_send_errors(tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    args = ["report", "--from", *FLEET, "--since", "1h", "--until", "2026-11-21T11:00:00Z", "--html", str(out)]
    assert main(args) == 0
    assert "No send errors in this window." in out.read_text()


def test_counters_sum_kernel_and_named_deltas_per_host_over_the_window() -> None:
    series = {c.host: c for c in tally_counters([SERIES], WINDOW, pytest.fail)}
    assert sorted(series) == ["ns1", "ns3"]
    ns1, ns3 = series["ns1"], series["ns3"]
    assert ns1.samples == 6 and (ns1.start, ns1.end) == ("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")
    assert ns1.deltas["UdpSndbufErrors"] + ns1.deltas["Udp6SndbufErrors"] == 412 == ns1.log["would_block"]
    assert ns3.deltas["UDP4SendErr"] + ns3.deltas["UDP6SendErr"] == 413 == ns3.log["netmgr"]
    assert ns1.cases == {"a": 6} and ns3.cases == {"b": 6}


def test_counters_outside_the_window_are_left_out() -> None:
    window = Window(parse_time("2026-11-20T10:05:00Z"), parse_time("2026-11-20T10:30:00Z"))
    series = {c.host: c for c in tally_counters([SERIES], window, pytest.fail)}
    assert series["ns1"].samples == 2 and series["ns1"].start == "2026-11-20T10:10:00Z"


def test_counters_record_without_its_fields_is_warned_with_a_count(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"event": {"dataset": "bind.host_counters"}, "host": {"name": "ns1"}}\n' * 2)
    warnings: list[str] = []
    assert tally_counters([str(broken)], WINDOW, warnings.append) == []
    assert warnings == [f"{broken}: 2 bind.host_counters record(s) without @timestamp, host.name or interval_s skipped"]


def test_page_without_counters_has_no_counters_section() -> None:
    from named_senderr.cli.report import parse_since, parse_until, summarize

    summary = summarize(FLEET, parse_since(SINCE), parse_until(UNTIL))
    assert summary.counters == [] and "Kernel and named counters" not in page(summary)


def test_time_axis_labels_are_unique_and_dated_over_several_days() -> None:
    tallies = Tallies()
    for day, hour in ((20, 10), (21, 3), (22, 23)):
        minute = f"2026-11-{day}T{hour:02d}:17Z"
        tallies.host_reason["ns1", "would_block"] += 5
        tallies.minute_reason[minute, "would_block"] = tallies.host_minute["ns1", minute] = 5
    window = Window(parse_time("2026-11-20T00:00:00Z"), parse_time("2026-11-23T00:00:00Z"))
    text = page(build("store", window, tallies))
    labels = re.findall(r'<text class="axis" x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]+)</text>', text)
    assert len(labels) >= 5 and len(labels) == len(set(labels)) and labels[0] == "20 Nov 10:00"
    assert "events per 60 minutes" in text and "20 Nov 10:17 <b>5</b>" in text

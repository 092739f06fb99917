"""report: the fixture fleet summed from files, Elasticsearch and Loki gives the same, known numbers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.cli.report import parse_since, parse_until, summarize
from named_senderr.errors import ConfigError
from named_senderr.report.summary import Summary, client_network

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
    """Everything but the source's name."""
    data = summary.as_dict()
    del data["source"]
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


def test_plot_and_html_write_a_png_and_a_page_with_it_inline(tmp_path: Path, capsys) -> None:
    png, page = tmp_path / "r.png", tmp_path / "r.html"
    args = ["report", "--from", *FLEET, "--since", SINCE, "--until", UNTIL, "--plot", str(png), "--html", str(page)]
    assert main(args) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64,iVBORw0KGgo" in page.read_text() and "src='http" not in page.read_text()
    assert "peak 2026-11-20T10:17Z (98)" in capsys.readouterr().out


def ship_fleet(tmp_path: Path, url: str) -> None:
    dead = tmp_path / "dead.ndjson"
    assert main(["ship", *FLEET, "--to", url, "--dead-letter", str(dead), "--no-progress"]) == 0


def poll_summary(source: str, expected: dict) -> Summary:
    """Bounded poll: stores are eventually consistent (refresh interval, Loki ingester)."""
    deadline = time.monotonic() + 15
    while True:
        summary = fleet_summary([source])
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


@pytest.mark.servers
def test_loki_report_equals_the_files_report(loki_url: str, tmp_path: Path) -> None:
    url = f"loki+{loki_url}?job=report-{uuid.uuid4().hex[:8]}"
    ship_fleet(tmp_path, url)
    expected = numbers(fleet_summary(FLEET))
    assert numbers(poll_summary(url, expected)) == expected


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

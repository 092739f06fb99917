"""hostcheck: the three measured cases told apart from fixture snapshots, logs and a statistics channel."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.hostcheck.counters import read_nics, read_snmp, read_snmp6
from named_senderr.hostcheck.diagnose import logs_full_buffer
from named_senderr.hostcheck.statschannel import Stats, parse
from tests.polling import wait_until

DATA = Path(__file__).resolve().parent / "data" / "hostcheck"


def check(capsys, after: str, log: str, *extra: str) -> dict:
    args = ["hostcheck", "--proc", str(DATA / "before"), "--proc", str(DATA / after), "--sys", str(DATA / "sys-full")]
    assert main([*args, "--log", str(DATA / log), "--json", *extra]) == 0
    return orjson.loads(capsys.readouterr().out)


def test_snmp_and_snmp6_udp_counters_are_read_by_name() -> None:
    assert read_snmp(DATA / "after-c" / "net" / "snmp") == {"InErrors": 0, "RcvbufErrors": 0, "SndbufErrors": 125}
    assert read_snmp6(DATA / "after-a" / "net" / "snmp6") == {"InErrors": 0, "RcvbufErrors": 0, "SndbufErrors": 40}


def test_nic_duplex_speed_and_state_are_read_and_lo_has_none() -> None:
    nics = {n.name: (n.operstate, n.duplex, n.speed_mbps) for n in read_nics(DATA / "sys-full")}
    assert nics == {"eth0": ("up", "full", 1000), "lo": ("unknown", None, None)}


def test_case_a_sndbuf_errors_one_for_one_with_would_block_lines(capsys) -> None:
    result = check(capsys, "after-a", "would-block.log")
    assert result["case"] == "a" and result["lines"]["would_block"] == 40 and result["deltas"]["Udp6SndbufErrors"] == 40
    assert "raise net.core.wmem_default/wmem_max" in result["summary"]


def test_case_b_netmgr_lines_pile_up_while_sndbuf_errors_stay_flat(capsys) -> None:
    result = check(capsys, "after-b", "netmgr.log")
    assert result["case"] == "b" and result["lines"]["netmgr"] == 60 and result["deltas"]["Udp6SndbufErrors"] == 1
    assert "libuv" in result["summary"] and "not help" in result["summary"]


def test_case_c_sndbuf_errors_without_any_line_point_at_egress(capsys) -> None:
    result = check(capsys, "after-c", "quiet.log")
    assert result["case"] == "c" and result["deltas"]["UdpSndbufErrors"] == 25 and "qdisc" in result["summary"]


def test_checklist_flags_half_duplex_default_wmem_and_receive_errors(capsys) -> None:
    args = ["hostcheck", "--proc", str(DATA / "before"), "--proc", str(DATA / "after-rcv"), "--sys", str(DATA / "sys")]
    assert main([*args, "--json"]) == 0
    findings = orjson.loads(capsys.readouterr().out)["findings"]
    assert any(f.startswith("eth1: half duplex at 100 Mb/s") for f in findings)
    assert any(f.startswith("net.core.wmem_max = 212992") for f in findings)
    assert any(f.startswith("UdpRcvbufErrors +7") for f in findings)


def test_statistics_channel_json_and_xml_give_the_same_counters() -> None:
    assert parse((DATA / "stats-before.json").read_bytes(), "json").send_errors == {"UDP4SendErr": 0, "UDP6SendErr": 2}
    assert parse((DATA / "stats-after.xml").read_bytes(), "xml").send_errors == {"UDP4SendErr": 0, "UDP6SendErr": 62}


def test_statistics_channel_json_and_xml_name_the_version_bind_wrote() -> None:
    assert parse((DATA / "stats-9.18.30.json").read_bytes(), "json") == Stats(
        {"UDP4SendErr": 0, "UDP6SendErr": 4}, "9.18.30"
    )
    assert parse((DATA / "stats-9.18.30.xml").read_bytes(), "xml") == Stats(
        {"UDP4SendErr": 0, "UDP6SendErr": 4}, "9.18.30"
    )
    assert parse((DATA / "stats-before.json").read_bytes(), "json").version is None


@pytest.mark.parametrize(
    ("version", "logs"),
    [
        ("9.11.37", True),
        ("9.15.5", True),
        ("9.15.6", False),
        ("9.16.50", False),
        ("9.16.1-S1", False),
        ("9.18.30", False),
        ("9.18.31", True),
        ("9.19.24", False),
        ("9.20.2", False),
        ("9.20.3", True),
        ("9.21.1", False),
        ("9.21.2", True),
        ("BIND", None),
    ],
)
def test_versions_that_never_log_a_full_send_buffer_are_the_uv_udp_send_only_ones(version, logs) -> None:
    assert logs_full_buffer(version) is logs


@contextmanager
def serve(answers: list[bytes]) -> Iterator[str]:
    """A loopback BIND statistics channel giving ``answers`` in turn, then the last one again."""
    answers = list(answers)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/json/v1/net"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def stats_channel() -> Iterator[str]:
    """The JSON snapshot, then the XML one."""
    with serve([(DATA / "stats-before.json").read_bytes(), (DATA / "stats-after.xml").read_bytes()]) as url:
        yield url


@pytest.fixture
def silent_channel() -> Iterator[str]:
    """A BIND 9.18.30: JSON, then XML, as its statistics channel writes them."""
    with serve([(DATA / "stats-9.18.30.json").read_bytes(), (DATA / "stats-9.18.30.xml").read_bytes()]) as url:
        yield url


@pytest.fixture
def logging_channel() -> Iterator[str]:
    """A BIND 9.20.3, which logs a full send buffer."""
    with serve([(DATA / "stats-9.20.3.json").read_bytes()]) as url:
        yield url


def test_statistics_channel_send_errors_rise_with_netmgr_lines(capsys, stats_channel: str) -> None:
    result = check(capsys, "after-b", "netmgr.log", "--stats-url", stats_channel)
    assert result["case"] == "b" and result["deltas"]["UDP6SendErr"] == 60


def test_bind_that_never_logs_a_full_buffer_is_told_not_to_trust_a_quiet_log(capsys, silent_channel: str) -> None:
    result = check(capsys, "after-c", "quiet.log", "--stats-url", silent_channel)
    [finding] = [f for f in result["findings"] if f.startswith("BIND 9.18.30")]
    assert "logs no line" in finding and "UDP4SendErr/UDP6SendErr" in finding and "Do not trust a quiet log" in finding
    assert result["case"] == "c" and "named's own answers" in result["summary"]


def test_bind_that_logs_a_full_buffer_gets_no_silence_warning(capsys, logging_channel: str) -> None:
    result = check(capsys, "after-c", "quiet.log", "--stats-url", logging_channel)
    assert not [f for f in result["findings"] if "quiet log" in f]
    assert result["case"] == "c" and "named's own answers" not in result["summary"]


def test_version_text_that_is_not_bind_s_is_named_in_a_finding(capsys) -> None:
    body = (DATA / "stats-9.18.30.json").read_bytes().replace(b'"9.18.30"', b'"unknown"')
    with serve([body]) as url:
        result = check(capsys, "after-c", "quiet.log", "--stats-url", url)
    assert any(f.startswith("statistics channel version 'unknown' is not 9.x.y") for f in result["findings"])


def test_unreachable_statistics_channel_names_the_url_and_the_setting(capsys) -> None:
    args = ["hostcheck", "--proc", str(DATA / "before"), "--proc", str(DATA / "after-a")]
    assert main([*args, "--stats-url", "http://127.0.0.1:9/json/v1/net"]) == 1
    assert "statistics-channels" in capsys.readouterr().err


def test_emit_writes_one_host_counters_event_per_interval(capsys, tmp_path: Path) -> None:
    args = ["hostcheck", "--proc", str(DATA / "after-a"), "--sys", str(DATA / "sys-full"), "--interval", "0.01"]
    assert main([*args, "--emit", "--count", "2"]) == 0
    events = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"]["dataset"] for e in events] == ["bind.host_counters"] * 2
    assert events[0]["bind"]["host_counters"]["udp6"]["SndbufErrors"] == 40
    assert events[1]["bind"]["host_counters"]["case"] == "quiet"


def test_missing_proc_root_names_the_option(capsys, tmp_path: Path) -> None:
    assert main(["hostcheck", "--proc", str(tmp_path), "--proc", str(tmp_path)]) == 1
    assert "point --proc at a proc root" in capsys.readouterr().err


def test_live_sampling_says_what_it_samples_and_for_how_long_before_the_wait(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    log = tmp_path / "named.log"
    log.write_text("")
    command = [sys.executable, "-m", "named_senderr", "hostcheck", "--interval", "30", "--log", str(log)]
    with open(err, "wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out)
    try:
        wait_until(lambda: b"over 30 s" in err.read_bytes(), timeout=10)
        assert process.poll() is None  # told during the wait, not after it
    finally:
        process.kill()
        process.wait(timeout=10)
    assert err.read_text() == (
        "named-senderr: hostcheck: sampling UDP counters of /proc/net/snmp and snmp6, net.core buffers, NICs under "
        f"/sys/class/net, send-error lines appended to {log} over 30 s; then the diagnosis\n"
    )

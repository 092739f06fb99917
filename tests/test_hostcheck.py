"""hostcheck: the three measured cases told apart from fixture snapshots, logs and a statistics channel."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.hostcheck.counters import read_nics, read_snmp, read_snmp6
from named_senderr.hostcheck.statschannel import parse
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
    assert parse((DATA / "stats-before.json").read_bytes(), "json") == {"UDP4SendErr": 0, "UDP6SendErr": 2}
    assert parse((DATA / "stats-after.xml").read_bytes(), "xml") == {"UDP4SendErr": 0, "UDP6SendErr": 62}


@pytest.fixture
def stats_channel() -> Iterator[str]:
    """A loopback BIND statistics channel answering the JSON snapshot, then the XML one."""
    answers = [(DATA / "stats-before.json").read_bytes(), (DATA / "stats-after.xml").read_bytes()]

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


def test_statistics_channel_send_errors_rise_with_netmgr_lines(capsys, stats_channel: str) -> None:
    result = check(capsys, "after-b", "netmgr.log", "--stats-url", stats_channel)
    assert result["case"] == "b" and result["deltas"]["UDP6SendErr"] == 60


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

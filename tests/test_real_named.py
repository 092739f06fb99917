"""Logs of real BIND 9.11.37 and 9.18.49 servers under a reproduced egress bottleneck.

The expectation is derived from the logs themselves by a method independent of
the parser (substring search, last ": " field), and from the fixture README:
every send error is found, nothing else, with the reasons the README explains.
"""

from __future__ import annotations

import pytest

from named_senderr.engine.printing import run_parse
from named_senderr.settings.parse import ParseConfig
from tests.corpus import REAL_NAMED
from tests.parsing import make_parser

PHRASES = ("error sending response: ", "send failed: ", "Sending UDP messages failed: ")
# The fixture README: EPERM from the nftables drop reads "host unreachable" before
# 9.16; netmgr reports EAGAIN as "no pending connections".
README_REASONS = {
    "would block": "would_block",
    "host unreachable": "host_unreachable",
    "connection reset": "connection_reset",
    "socket is not connected": "not_connected",
    "no pending connections": "would_block",
}
LOGS = sorted(REAL_NAMED.glob("*.log"))


def send_error_lines(path):
    return [line for line in path.read_text().splitlines() if any(p in line for p in PHRASES)]


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_every_send_error_line_becomes_an_event_with_the_logged_reason(path):
    parser = make_parser()
    for line in send_error_lines(path):
        event = parser.parse(line)
        reason_text = line.rsplit(": ", 1)[1]
        assert event.reason_text == reason_text, line
        assert event.reason == README_REASONS[reason_text], line


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_no_other_line_becomes_an_event_or_a_rejection(path, tmp_path):
    with (tmp_path / "out.ndjson").open("wb") as out:
        stats = run_parse(ParseConfig(inputs=(str(path),), timezone="UTC"), out, warn=print)
    assert stats.lines == len(path.read_text().splitlines())
    assert stats.events == len(send_error_lines(path))
    assert stats.rejected == 0


def test_bind_911_log_has_the_four_kinds_of_failure_the_readme_describes():
    parser = make_parser()
    reasons = {parser.parse(line).reason for line in send_error_lines(REAL_NAMED / "bind-9.11.37-named.log")}
    assert reasons == {"would_block", "host_unreachable", "connection_reset", "not_connected"}


def test_bind_918_log_has_send_failed_events_and_one_rate_limited_udp_line():
    parser = make_parser()
    events = [parser.parse(line) for line in send_error_lines(REAL_NAMED / "bind-9.18.49-named.log")]
    kinds = [e.message_kind for e in events]
    assert kinds.count("udp_send_failed") == 1
    assert set(kinds) == {"send_failed", "udp_send_failed"}
    assert {e.reason for e in events} == {"would_block"}
    assert all(e.client_ip == "2001:db8:53::2" for e in events if e.message_kind == "send_failed")
    assert {e.category for e in events} == {"security", "general"}

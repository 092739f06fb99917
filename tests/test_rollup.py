"""Rollup stage: one event per server x reason x client network x window, with count and first/last seen."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.errors import ConfigError
from named_senderr.event import to_ecs, to_flat
from named_senderr.normalize.rollup import Windows, parse_window, rollup
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser

FLEET_NS1 = Path(__file__).resolve().parent / "data" / "fleet" / "ns1.log"
LINE = "2026-11-20T10:{mm}:{ss}Z ns1 named[1]: client: warning: client @0x1 {ip}#5353 (x.example): view v: error sending response: {why}"


def events(*specs: tuple[str, str, str, str]):
    parser = NamedLineParser(TimestampNormalizer(resolve_zone("UTC")))
    return [parser.parse_bytes(LINE.format(mm=m, ss=s, ip=ip, why=why).encode()) for m, s, ip, why in specs]


def test_same_host_reason_network_and_minute_become_one_event_with_count_and_seen_times() -> None:
    rolled = list(
        rollup(
            events(("00", "01.100", "198.51.100.7", "would block"), ("00", "59.900", "198.51.100.9", "would block")), 60
        )
    )
    assert len(rolled) == 1
    e = rolled[0]
    assert (e.repeat_count, e.timestamp, e.client_ip) == (2, "2026-11-20T10:00:01.100Z", "198.51.100.0")
    assert (e.first_seen, e.last_seen, e.rollup_window) == ("2026-11-20T10:00:01.100Z", "2026-11-20T10:00:59.900Z", 60)
    assert e.message.startswith("client @0x1")  # named's message, untouched
    assert "198.51.100.7#5353" in e.original  # the exemplar line, as logged


def test_rolled_up_event_renders_count_and_seen_times() -> None:
    [e] = rollup(
        events(("00", "01.100", "198.51.100.7", "would block"), ("00", "09.900", "198.51.100.9", "would block")), 60
    )
    doc = to_ecs(e, "unused")
    assert (doc["event"]["start"], doc["event"]["end"]) == ("2026-11-20T10:00:01.100Z", "2026-11-20T10:00:09.900Z")
    assert doc["bind"]["rollup"] == {"count": 2, "window_seconds": 60}
    flat = to_flat(e)
    assert (flat["count"], flat["first_seen"], flat["last_seen"]) == (
        2,
        "2026-11-20T10:00:01.100Z",
        "2026-11-20T10:00:09.900Z",
    )


def test_other_reason_network_or_window_start_new_events() -> None:
    rolled = list(rollup(events(("00", "01.100", "198.51.100.7", "would block"),
                                ("00", "02.100", "198.51.100.7", "connection reset"),
                                ("00", "03.100", "203.0.113.7", "would block"),
                                ("01", "00.500", "198.51.100.7", "would block")), 60))  # fmt: skip
    assert [(e.reason, e.client_ip, e.repeat_count) for e in rolled] == [
        ("would_block", "198.51.100.0", 1), ("connection_reset", "198.51.100.0", 1),
        ("would_block", "203.0.113.0", 1), ("would_block", "198.51.100.0", 1)]  # fmt: skip


def test_counts_add_up_to_the_events_rolled() -> None:
    parser = NamedLineParser(TimestampNormalizer(resolve_zone("UTC")))
    raw = [e for e in map(parser.parse_bytes, FLEET_NS1.read_bytes().splitlines()) if e is not None]
    rolled = list(rollup(raw, 60))
    assert (
        sum(e.repeat_count for e in rolled) == len(raw) == 512 and len(rolled) == 277
    )  # measured: 5 networks x 3 reasons x 60 min, sparse


def test_window_must_be_at_least_a_second() -> None:
    assert parse_window("60s") == 60 and parse_window("5m") == 300
    with pytest.raises(ConfigError, match="--rollup '0s'"):
        parse_window("0s")


def test_ship_rollup_to_stdout_sends_fewer_events_with_the_same_total(tmp_path: Path, capfdbinary) -> None:
    dead = tmp_path / f"{uuid.uuid4().hex}.ndjson"
    args = ["ship", str(FLEET_NS1), "--to", "stdout:?format=flat", "--rollup", "60s", "--no-progress"]
    assert main([*args, "--dead-letter", str(dead)]) == 0
    records = [orjson.loads(line) for line in capfdbinary.readouterr().out.splitlines()]
    assert sum(r["repeat_count"] for r in records) == 512 and len(records) == 277


def test_undo_takes_back_a_refused_batchs_events_and_the_windows_it_closed() -> None:
    """The delivery refused the batch whole: its sender sends it again, and it must count once."""
    windows = Windows(60)
    [first] = events(("00", "01.000", "198.51.100.7", "would block"))
    later = events(("00", "02.000", "198.51.100.8", "would block"), ("02", "30.000", "198.51.100.9", "would block"))
    windows.begin()
    assert windows.add(first, 1) == []
    windows.begin()
    closed = [rolled for event in later for rolled in windows.add(event, 2)]
    assert [e.repeat_count for e in closed] == [2]  # the 10:00 window, closed by the 10:02 event
    windows.undo()
    windows.begin()
    again = [rolled for event in later for rolled in windows.add(event, 3)]
    assert [e.repeat_count for e in again] == [2] and [e.repeat_count for e in windows.close()] == [1]
    assert windows.oldest_seq() is None


REAL_9_18 = Path(__file__).resolve().parent / "data" / "real-named" / "bind-9.18.49-named.log"


def test_udp_line_stays_its_own_group_beside_the_client_groups_of_the_same_drops() -> None:
    """bind-9.18.49: 69 per-client send failed lines and 1 UDP line name the same drops; counts stay apart."""
    parser = NamedLineParser(TimestampNormalizer(resolve_zone("UTC")))
    raw = [e for e in map(parser.parse_bytes, REAL_9_18.read_bytes().splitlines()) if e is not None]
    totals: dict[str, int] = {}
    for e in rollup(raw, 60):
        totals[e.message_kind] = totals.get(e.message_kind, 0) + e.repeat_count
    assert totals == {"send_failed": 69, "udp_send_failed": 1}


def test_udp_line_does_not_fold_into_a_client_group_without_an_address() -> None:
    """A per-client line with no address (the ``(no-peer)`` form) in the UDP line's window keeps its own count."""
    parser = NamedLineParser(TimestampNormalizer(resolve_zone("UTC")))
    udp = parser.parse_bytes(
        b"2026-11-20T10:00:01.100Z ns1 named[1]: general: error: Sending UDP messages failed: no pending connections"
    )
    assert udp is not None and udp.message_kind == "udp_send_failed" and udp.client_ip is None
    no_peer = replace(
        udp, message_kind="send_failed", timestamp="2026-11-20T10:00:01.200Z", message="(no-peer): send failed"
    )
    rolled = list(rollup([udp, no_peer], 60))
    assert [(e.message_kind, e.repeat_count) for e in rolled] == [("udp_send_failed", 1), ("send_failed", 1)]

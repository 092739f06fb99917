"""Privacy stage: addresses and qnames reduced in the event and in the lines that quote them."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.errors import ConfigError
from named_senderr.normalize.privacy import PrivacyConfig, compile_privacy
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser

V4 = b"2026-11-20T10:00:01.5Z ns1 named[1]: client: warning: client @0x1 198.51.100.77#5353 (a.b.example.org): view v: error sending response: would block"
V6 = b"2026-11-20T10:00:01.5Z ns1 named[1]: client: warning: client @0x1 2001:db8:1:1ff::9#53 (www.example.com): view v: error sending response: would block"
KEY = "k" * 32


def event(line: bytes):
    return NamedLineParser(TimestampNormalizer(resolve_zone("UTC"))).parse_bytes(line)


def test_truncate_zeroes_host_bits_of_ipv4_and_ipv6_everywhere() -> None:
    stage = compile_privacy(PrivacyConfig(client_ip="truncate:/24,/56"))
    e4, e6 = stage(event(V4)), stage(event(V6))
    assert (e4.client_ip, e6.client_ip) == ("198.51.100.0", "2001:db8:1:100::")
    assert "198.51.100.77" not in e4.original + e4.message and "198.51.100.0#5353" in e4.original
    assert "1ff::9" not in e6.original + e6.message


def test_hash_is_keyed_stable_and_a_valid_ipv6(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    stage = compile_privacy(PrivacyConfig(client_ip=f"hash:{key}"))
    first, again = stage(event(V4)).client_ip, stage(event(V4)).client_ip
    other = compile_privacy(PrivacyConfig(client_ip="hash:env:K"), env={"K": "x" * 32})(event(V4)).client_ip
    assert first == again and first.startswith("fd") and other != first
    assert "198.51.100.77" not in stage(event(V4)).original


def test_qname_suffix_keeps_the_last_labels_in_event_and_line() -> None:
    e = compile_privacy(PrivacyConfig(qname="suffix:2"))(event(V4))
    assert e.qname == "example.org" and "(example.org)" in e.original and "a.b.example" not in e.message


def test_qname_drop_removes_it_and_marks_the_line() -> None:
    e = compile_privacy(PrivacyConfig(qname="drop"))(event(V4))
    assert e.qname is None and "(redacted)" in e.original and "example" not in e.original


def test_qname_hash_without_a_key_is_refused_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="--qname hash needs a key"):
        compile_privacy(PrivacyConfig(qname="hash"))


def test_missing_key_file_names_the_file_never_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hash key file .*nokey: cannot read"):
        compile_privacy(PrivacyConfig(client_ip=f"hash:{tmp_path / 'nokey'}"))


def test_short_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("short")
    with pytest.raises(ConfigError, match="shorter than 16 bytes") as info:
        compile_privacy(PrivacyConfig(client_ip=f"hash:{key}"))
    assert "short'" not in str(info.value).replace("shorter", "")


def test_bad_mode_is_refused_naming_the_forms() -> None:
    with pytest.raises(ConfigError, match="truncate:/24,/56 or hash:KEYFILE"):
        compile_privacy(PrivacyConfig(client_ip="mask"))


def test_ship_to_stdout_carries_no_raw_address_or_qname(tmp_path: Path, capfdbinary) -> None:
    log = tmp_path / "n.log"
    log.write_bytes(V4 + b"\n" + V6 + b"\n")
    args = ["ship", str(log), "--to", "stdout:?format=flat", "--client-ip", "truncate:/24,/56", "--qname", "drop"]
    assert main([*args, "--dead-letter", str(tmp_path / f"{uuid.uuid4().hex}.ndjson"), "--no-progress"]) == 0
    out = capfdbinary.readouterr().out
    records = [orjson.loads(line) for line in out.splitlines()]
    assert [r["client_ip"] for r in records] == ["198.51.100.0", "2001:db8:1:100::"]
    assert b"198.51.100.77" not in out and b"example" not in out

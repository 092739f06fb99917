"""The shipped Fluentd configurations, checked against the program they drive.

No Fluentd runs here (Debian bookworm has no package), so the exec_filter
command is taken from conf/fluentd/exec-filter.conf as written and driven the
way out_exec_filter drives it; the forward configs must match serve's wire.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import msgpack

CONF = Path(__file__).resolve().parent.parent / "conf" / "fluentd"
LINE = "21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#5353 (example.com): error sending response: would block"
QUERY = "21-Nov-2026 04:48:37.004 queries: info: client @0x7f 192.0.2.9#4076 (example.com): query: example.com IN A"


def directive(text: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s+(.+)$", text, re.M)
    assert match, f"{name} missing"
    return match.group(1).strip()


def section(text: str, name: str) -> str:
    match = re.search(rf"<{name}>(.*?)</{name}>", text, re.S)
    assert match, f"<{name}> missing"
    return match.group(1)


def test_exec_filter_conf_speaks_msgpack_both_ways():
    text = (CONF / "exec-filter.conf").read_text()
    text = text[text.index("@type exec_filter") :]  # the <match> that runs the child
    assert directive(section(text, "format"), "@type") == "msgpack"
    assert directive(section(text, "parse"), "@type") == "msgpack"


def test_exec_filter_conf_command_turns_fluentd_records_into_events(tmp_path):
    text = (CONF / "exec-filter.conf").read_text()
    argv = shlex.split(directive(text, "command"))
    assert argv[:2] == ["named-senderr", "fluentd-filter"]
    key = argv[argv.index("--key") + 1]
    argv[argv.index("--log-file") + 1] = str(tmp_path / "filter.log")
    records = b"".join(msgpack.packb({key: line}) for line in (QUERY, LINE, QUERY))
    result = subprocess.run(
        [sys.executable, "-m", "named_senderr", *argv[1:]], input=records, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(result.stdout)
    [event] = list(unpacker)
    assert event["client"]["ip"] == "192.0.2.1" and event["event"]["reason"] == "would_block"


def test_forward_confs_point_at_serves_default_address_and_ask_for_acks():
    from named_senderr.cli import build_parser

    args = build_parser("serve").parse_args(["serve"])
    out = (CONF / "out-forward-to-serve.conf").read_text()
    server = section(out, "server")
    assert f"{directive(server, 'host')}:{directive(server, 'port')}" == args.forward
    assert directive(out, "require_ack_response") == "true"


def test_exec_filter_conf_extracts_the_tag_that_rejected_records_carry(tmp_path):
    """--rejected-tag TAG puts TAG in the field that the config's <extract> makes the record's tag."""
    text = (CONF / "exec-filter.conf").read_text()
    tag_key = directive(section(text, "extract"), "tag_key")
    argv = shlex.split(directive(text, "command"))
    argv[argv.index("--log-file") + 1] = str(tmp_path / "filter.log")
    bad_port = LINE.replace("#5353", "#99999")
    result = subprocess.run(
        [sys.executable, "-m", "named_senderr", *argv[1:], "--rejected-tag", "named.rejected"],
        input=msgpack.packb({"message": bad_port}),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    record = msgpack.unpackb(result.stdout)
    assert record[tag_key] == "named.rejected" and record["message"] == bad_port

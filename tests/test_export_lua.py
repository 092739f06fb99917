"""The generated Lua normalizer under a real Lua interpreter, against the corpus and reasons.py.

Each record is what Fluent Bit's parser filter hands the lua filter: the
non-empty captures of the first matching regex, plus ``log`` (and journald's
own fields for journal lines). Python's ``re`` supplies the captures; that
Onigmo gives the same ones is tests/test_export_onigmo.py's job.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
from datetime import datetime

import pytest

from named_senderr import reasons
from named_senderr.event import Event
from named_senderr.export.fluent_bit import lua_normalizer
from named_senderr.export.source import taxonomy
from tests.corpus import OPTIONAL_KEYS, REQUIRED_KEYS
from tests.parsing import NOW, make_parser
from tests.test_export import seen_corpus, tool

# Calls the normalizer on every record of a cases file and prints one JSON line per call.
RUNNER = r"""
local now = tonumber(os.getenv("NAMED_SENDERR_TEST_NOW") or "")
if now then  -- the clock of tests/parsing.py, for RFC 3164's missing year
  local real = os.time
  os.time = function(t) if t == nil then return now end return real(t) end
end
dofile(arg[1])
local function encode(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    for key, item in pairs(value) do parts[#parts + 1] = encode(tostring(key)) .. ":" .. encode(item) end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "string" then
    return '"' .. string.gsub(value, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
  elseif kind == "number" then
    if value == math.floor(value) then return string.format("%d", value) end
    return string.format("%.17g", value)
  end
  return tostring(value)
end
for _, record in ipairs(dofile(arg[2])) do
  local code, timestamp, out = named_senderr("named", 1700000000.5, record)
  io.write(encode({ code = code, timestamp = timestamp, record = out }), "\n")
end
"""


def lua_literal(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, int):
        return str(value)
    return '"' + "".join(f"\\{b:03d}" for b in str(value).encode()) + '"'


@pytest.fixture(scope="module")
def normalize(tmp_path_factory):
    lua = tool("lua5.4", "lua5.3", "lua", install="apt-get install -y lua5.4")
    work = tmp_path_factory.mktemp("lua")
    (work / "normalizer.lua").write_text(lua_normalizer(taxonomy()))
    (work / "runner.lua").write_text(RUNNER)

    def run(records: list[dict], zone: str = "UTC") -> list[dict]:
        cases = work / "cases.lua"
        cases.write_text("return {\n" + ",\n".join(lua_literal(r) for r in records) + "\n}\n")
        command = [lua, str(work / "runner.lua"), str(work / "normalizer.lua"), str(cases)]
        environment = os.environ | {"TZ": zone, "NAMED_SENDERR_TEST_NOW": str(int(NOW.timestamp()))}
        result = subprocess.run(command, capture_output=True, timeout=60, check=True, env=environment)
        assert result.stderr == b""
        return [json.loads(line) for line in result.stdout.splitlines()]

    return run


def client_record(text: str, kind: str, **fields) -> dict:
    phrase = {"error_sending_response": "error sending response", "send_failed": "send failed"}.get(kind)
    record = {"phrase": phrase} if phrase else {"udp_phrase": "Sending UDP messages failed"}
    if kind == reasons.INTERNAL_SEND_FAILED:
        record = {"internal_phrase": "internal_send", "destination_ip": "192.0.2.53", "destination_port": "53"}
    return record | {"reason_text": text, "bind_message": "x"} | fields


def test_every_corpus_positive_gets_the_expected_fields(normalize):
    seen = [s for s in seen_corpus() if s.case.expect is not None]
    results = normalize([s.captures | s.journal | {"log": s.text} for s in seen])
    wrong = []
    for s, result in zip(seen, results, strict=True):
        expect = s.case.expect
        keys = [*REQUIRED_KEYS, *(k for k in OPTIONAL_KEYS if k in expect)]
        wanted = {k: expect[k] for k in keys} | {"hint": reasons.hint(expect["reason"], expect["message_kind"])}
        got = {k: result["record"].get(k) for k in keys} | {"hint": result["record"]["hint"]}
        if got != wanted or result["record"]["repeat_count"] != expect.get("repeat_count", 1):
            wrong.append((s.case.line, got, wanted))
    assert wrong == []


def test_every_corpus_negative_is_dropped_whether_or_not_a_regex_matched(normalize):
    seen = [s for s in seen_corpus() if s.case.expect is None]
    results = normalize([s.captures | {"log": s.text} for s in seen])
    assert {r["code"] for r in results} == {-1}
    assert any(s.captures for s in seen), "at least one negative reaches Lua with captures (port 70000)"


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_logged_time_becomes_the_record_time_as_python_reads_it(normalize, zone):
    seen = [s for s in seen_corpus() if s.case.expect is not None]
    results = normalize([s.captures | s.journal | {"log": s.text} for s in seen], zone)
    parser, wrong = make_parser(zone), []
    for s, result in zip(seen, results, strict=True):
        event = parser.parse_bytes(s.case.line_bytes)
        assert isinstance(event, Event)
        if event.timestamp is None:
            wanted: tuple = (2, 1700000000.5)  # no usable time: the time Fluent Bit read the line
        else:
            wanted = (1, datetime.fromisoformat(event.timestamp).timestamp())
        if result["code"] != wanted[0] or abs(result["timestamp"] - wanted[1]) > 1e-6:
            wrong.append((s.text, result["code"], result["timestamp"], wanted))
    assert wrong == []
    assert sum(r["code"] == 1 for r in results) > 150


def test_kept_record_without_a_logged_time_keeps_its_time_and_loses_the_helper_captures(normalize):
    [result] = normalize([client_record("would block", "send_failed", repeat_count="3", repeat_close="]")])
    assert (result["code"], result["timestamp"]) == (2, 1700000000.5)
    assert result["record"]["repeat_count"] == 3
    assert not {"phrase", "udp_phrase", "repeat_close", "bind_message"} & set(result["record"])


@pytest.mark.parametrize(
    "kind",
    [reasons.ERROR_SENDING_RESPONSE, reasons.SEND_FAILED, reasons.UDP_SEND_FAILED, reasons.INTERNAL_SEND_FAILED],
)
def test_reason_of_every_known_text_agrees_with_reasons_classify(normalize, kind):
    texts = [*reasons.REASON_BY_TEXT, *reasons.ERA_REASON_BY_TEXT[reasons.NETMGR], "frobnicated", "Would Block"]
    texts += reasons.ERA_REASON_BY_TEXT[reasons.ERRNO]
    results = normalize([client_record(text, kind) for text in texts])
    assert [r["record"]["reason"] for r in results] == [reasons.classify(t, kind) for t in texts]
    assert [r["record"]["message_kind"] for r in results] == [kind] * len(texts)


def test_internal_send_record_gets_an_integer_destination_port_and_its_scope(normalize):
    record = client_record("Invalid argument", reasons.INTERNAL_SEND_FAILED, destination_scope="2")
    [result] = normalize([record])
    out = result["record"]
    assert (out["destination_port"], out["scope"], out["message_kind"]) == (53, "2", reasons.INTERNAL_SEND_FAILED)
    assert not {"internal_phrase", "destination_scope"} & set(out)


def test_internal_send_record_with_an_impossible_destination_port_is_dropped(normalize):
    [result] = normalize([client_record("Invalid argument", reasons.INTERNAL_SEND_FAILED, destination_port="70000")])
    assert result["code"] == -1


def test_ipv6_addresses_are_accepted_exactly_as_inet_pton_accepts_them(normalize):
    rng = random.Random(7)
    crafted = ["::", "::1", "1::", ":::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "1::2::3"]
    crafted += ["12345::", "::ffff:192.0.2.1", "::ffff:192.0.2.256", "::ffff:01.2.3.4", "1:2:3:4:5:6:1.2.3.4"]
    crafted += ["1:2:3:4:5:6:7:1.2.3.4", ":1::", "1:", "fe80::abf9", "::1.2.3", "1.2.3.4::", "::ffff:1.2.3.4.5"]
    generated = ["".join(rng.choice("0123456789abcdef:.") for _ in range(rng.randint(2, 24))) for _ in range(3000)]
    candidates = [c for c in crafted + generated if ":" in c]
    results = normalize([client_record("unset", "send_failed", client_ip=c, client_port="53") for c in candidates])

    def inet_pton(text: str) -> bool:
        try:
            socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            return False
        return True

    disagree = [c for c, r in zip(candidates, results, strict=True) if (r["code"] == 2) != inet_pton(c)]
    assert disagree == []
    assert sum(r["code"] == 2 for r in results) > 20


@pytest.mark.parametrize(
    "fields",
    [
        {"client_ip": "192.0.2.1", "client_port": "65536"},
        {"repeat_count": "2"},
        {"repeat_close": "]"},
        {"phrase": "sent fine"},
    ],
)
def test_records_the_python_parser_rejects_are_dropped(normalize, fields):
    [result] = normalize([client_record("unset", "error_sending_response") | fields])
    assert result["code"] == -1


def test_record_no_parser_matched_is_dropped(normalize):
    [result] = normalize([{"log": "client 192.0.2.1#53: error sending response: unset21-Oct"}])
    assert result["code"] == -1

"""The compiled parse loop (parse/_named_fast.c) against the Python loop it mirrors (engine/transforms.py).

Each input goes through two ParseLines, one on each loop, each with its own parser: the events must be equal
field for field (dataclass ==), the rejections equal and paired with the very Line they came from, the rejects
file byte for byte, and the Stats equal. Skipped where the module was not built; a failure under CI=true,
whose machine has a compiler.
"""

from __future__ import annotations

import functools
import io
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from bench.generate_log import generate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from named_senderr.engine import transforms
from named_senderr.engine.transforms import ParseLines, parse_line
from named_senderr.event import Event
from named_senderr.lines import Line
from named_senderr.native import PURE_PYTHON_ENV
from named_senderr.parse import fast as fast_py
from named_senderr.parse.fast import compiled_loop
from named_senderr.parse.named import FIELDS, MAX_LINE_BYTES, MAX_QNAME_CHARS, NamedLineParser, Rejection
from named_senderr.telemetry import Stats
from tests.corpus import DATA, REAL_NAMED, load_cases
from tests.native import compiled
from tests.parsing import make_parser

MODULE = "named_senderr.parse._named_fast"
INGESTED = "2026-11-21T12:00:00.000Z"
FIXTURES = sorted([*REAL_NAMED.glob("*.log"), *(DATA / "fleet").glob("*.log"), *(DATA / "hostcheck").glob("*.log")])
CHUNK = 1000  # lines a file source hands over at once
HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fast() -> ModuleType:
    return compiled(MODULE)


@dataclass
class Outcome:
    events: list[Event]
    rejected: list[tuple[Rejection, Line]]
    rejects_file: bytes
    stats: Stats


def run(batches: list[list[Line]], compiled: bool, host: str | None, zone: str = "UTC") -> Outcome:
    """The batches through one fresh ParseLines on the compiled loop or on the Python one."""
    rejected: list[tuple[Rejection, Line]] = []
    rejects, stats = io.BytesIO(), Stats()
    with mock.patch.dict(os.environ, {PURE_PYTHON_ENV: "0" if compiled else "1"}):
        parse = ParseLines(make_parser(zone), stats, host, rejects, lambda r, line: rejected.append((r, line)))
    assert (type(parse._loop).__name__ == "Loop") == compiled
    events = [event for batch in batches for event in parse(batch)]
    return Outcome(events, rejected, rejects.getvalue(), stats)


def assert_alike(batches: list[list[Line]], host: str | None = None, zone: str = "UTC") -> None:
    with mock.patch.object(transforms, "ingest_now", lambda: INGESTED):  # one clock for both runs
        compiled, pure = run(batches, True, host, zone), run(batches, False, host, zone)
    assert compiled.events == pure.events
    assert [r for r, _ in compiled.rejected] == [r for r, _ in pure.rejected]
    assert all(a is b for (_, a), (_, b) in zip(compiled.rejected, pure.rejected, strict=True))
    assert compiled.rejects_file == pure.rejects_file
    assert compiled.stats == pure.stats


def file_lines(raw: bytes, name: str) -> list[Line]:
    lines, offset = [], 0
    for data in raw.splitlines(keepends=True):
        lines.append(Line(data, name, offset))
        offset += len(data)
    return lines


def chunks(lines: list[Line]) -> list[list[Line]]:
    return [lines[i : i + CHUNK] for i in range(0, len(lines), CHUNK)]


def generated(lines: int, error_rate: float, bind: str) -> list[Line]:
    out = io.StringIO()
    generate(lines, error_rate, bind, 53, out)
    return file_lines(out.getvalue().encode(), f"generated-{bind}-{error_rate}.log")


def test_parse_lines_runs_the_compiled_loop_where_it_was_built(fast: ModuleType) -> None:
    with mock.patch.dict(os.environ, {PURE_PYTHON_ENV: "0"}):
        assert isinstance(ParseLines(make_parser(), Stats())._loop, fast.Loop)


def test_pure_python_env_runs_the_python_loop(fast: ModuleType) -> None:
    probe = "from tests.parsing import make_parser; from named_senderr.engine.transforms import ParseLines; "
    probe += "from named_senderr.telemetry import Stats; print(type(ParseLines(make_parser(), Stats())._loop).__name__)"
    env = {**os.environ, PURE_PYTHON_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "partial"


def test_lines_on_the_happy_path_never_reach_the_reference(fast: ModuleType) -> None:
    """Once the caches know the reasons, an all-send-error log is parsed in C alone."""
    parser, handed = make_parser(), []

    def fallback(line: Line, host: str | None, ingested: str) -> Event | Rejection | None:
        handed.append(line)
        return parse_line(parser, line, host, ingested)

    with mock.patch.dict(os.environ, {PURE_PYTHON_ENV: "0"}):
        loop = compiled_loop(parser, fallback)
    assert loop is not None
    lines = generated(5000, 1.0, "9.18")
    loop(lines, None, INGESTED)  # the first sight of each reason text goes to the reference
    handed.clear()
    events, rejected = loop(lines, None, INGESTED)
    assert (len(events), rejected, handed) == (5000, [], [])


def test_every_corpus_row_parses_alike(fast: ModuleType) -> None:
    rows = [Line(case.line_bytes, "corpus", number) for number, case in enumerate(load_cases())]
    assert_alike([rows, rows])  # the second time through, the caches are warm: the C path parses


def test_the_corpus_alone_line_by_line_parses_alike(fast: ModuleType) -> None:
    rows = [Line(case.line_bytes, "corpus", number) for number, case in enumerate(load_cases())]
    assert_alike([[row] for row in rows + rows])


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.name)
def test_real_named_fixtures_parse_alike(fast: ModuleType, path: Path) -> None:
    lines = file_lines(path.read_bytes(), str(path))
    assert_alike(chunks(lines + lines))


@pytest.mark.parametrize("error_rate", [0.01, 1.0])
@pytest.mark.parametrize("bind", ["9.11", "9.18"])
def test_generated_logs_parse_alike(fast: ModuleType, error_rate: float, bind: str) -> None:
    assert_alike(chunks(generated(20000, error_rate, bind)))


def test_transport_hosts_and_times_fill_in_alike(fast: ModuleType) -> None:
    """Forward and syslog sources: the transport's host and time stand in where the line has none."""
    lines = [Line(c.line_bytes, None, None, host, False, time) for c in load_cases() for host, time in TRANSPORT]
    assert_alike([lines, lines], host="default.example")


# Seeds: corpus rows (every wrapper and era) and a few lines of each kind.
SEEDS = [case.line_bytes for case in load_cases()] + [
    b"21-Nov-2026 04:48:37.067 client @0x7f 192.0.2.1#53 (example.com): view external: error sending response: "
    b"would block",
    b"21-Nov-2026 04:48:37.006 security: debug 3: client @0x7ffffa4066b0 2001:db8:21e3::42d1#58753 "
    b"(api.example.org): view external: send failed: host unreachable",
    b"Nov 21 04:48:37 ns1 named[811]: message repeated 3 times: [ client @0x1 192.0.2.9#5353 (a.example): "
    b"error sending response: host unreachable]",
    b"02-Feb-2023 11:22:33.444 general: error: internal_send: 192.0.2.53#53: Network is down",
    b'{"MESSAGE":"client @0x1 192.0.2.1#53 (a.b): error sending response: connection reset",'
    b'"__REALTIME_TIMESTAMP":"1763700517067000","_HOSTNAME":"ns9"}',
]
TIMES = [
    "21-Nov-2026 04:48:37.067", "21-Nov-2026 04:48:37", "21-Nov-2026 04:48:37.1234", "21-nov-2026 04:48:37.067",
    "99-Bad-9999 99:99:99.000", "31-Feb-2026 04:48:37.000", "Nov 21 04:48:37", "Nov  1 04:48:37.123",
    "Feb 29 04:48:37", "Fri Nov 21 04:48:37 2026", "2026-11-21T04:48:37.123+01:00", "2026-11-21 04:48:37,123",
    "2026-11-21T04:48:37Z", "2026-11-21T04:48:37.123456789Z", "1763700517.067", "١٢-Nov-2026 04:48:37.067",
]  # fmt: skip
LEADING_TIME = re.compile(
    rb"^(?:\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2}(?:\.\d+)?|\w{3} +\d+ \d{2}:\d{2}:\d{2}(?:\.\d+)?"
    rb"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\S*) "
)
ADDRESS = re.compile(rb"(?<=[ (])[0-9A-Fa-f:.]+(?=(?:%\w+)?#\d)")
BAD_ADDRESSES = [b"2001:db8::g1", b"1:2:3:4:5:6:7:8:9", b":::", b"::ffff:999.1.1.1", b"fe80::1::2", b"::"]
TRANSPORT = [(None, None), ("", None), ("edge1.example", None), (None, "2026-11-21T04:48:37.067Z"), ("e2", "")]


def replace_time(raw: bytes, form: str) -> bytes:
    return form.encode() + b" " + LEADING_TIME.sub(b"", raw, count=1)


def journal(raw: bytes, as_bytes: bool) -> bytes:
    text = raw.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"')
    message = "[" + ",".join(str(b) for b in raw) + "]" if as_bytes else f'"{text}"'
    return f'{{"MESSAGE":{message},"__REALTIME_TIMESTAMP":"1763700517067000","_PID":"42"}}'.encode()


MUTATIONS: list[Callable[[bytes, int, bytes], bytes]] = [
    lambda raw, n, junk: raw[: n % (len(raw) + 1)] + b"\xff\xfe" + junk + raw[n % (len(raw) + 1) :],  # bad UTF-8
    lambda raw, n, junk: raw[: n % (len(raw) + 1)] + b"\x00" + raw[n % (len(raw) + 1) :],  # NUL
    lambda raw, n, junk: raw + [b"\r\n", b"\r", b"\n\r\n", b"\r\r"][n % 4],  # CRLF and kin
    lambda raw, n, junk: re.sub(rb"#\d+", b"#" + str(65535 + n % 2).encode(), raw, count=1),  # big ports
    lambda raw, n, junk: re.sub(rb"#\d+", b"#" + b"9" * (n % 40 + 1), raw, count=1),  # long ports
    lambda raw, n, junk: ADDRESS.sub(BAD_ADDRESSES[n % len(BAD_ADDRESSES)], raw, count=1),  # bad IPv6
    lambda raw, n, junk: raw.replace(b"client ", b"message repeated %d times: [ client " % n, 1),  # no ']'
    lambda raw, n, junk: raw.replace(b"client ", b"message repeated %d times: [ client " % n, 1) + b"]",
    lambda raw, n, junk: raw.rsplit(b": ", 1)[0] + b": " + junk,  # unknown reason text
    lambda raw, n, junk: re.sub(rb"\([^)]*\)", b"(" + b"a" * (MAX_QNAME_CHARS + n % 2) + b")", raw, count=1),
    lambda raw, n, junk: replace_time(raw, TIMES[n % len(TIMES)]),
    lambda raw, n, junk: journal(raw, n % 2 == 1),
    lambda raw, n, junk: raw + b" " + b"A" * (MAX_LINE_BYTES - len(raw) - 2 + n % 4),  # at and over the limit
    lambda raw, n, junk: raw[: n % (len(raw) + 1)],  # cut short
    lambda raw, n, junk: raw[: n % (len(raw) + 1)] + junk + raw[n % (len(raw) + 1) + len(junk) :],  # overwritten
]


# Minutes beside changes of offset: to and from summer time in Berlin, and Monrovia's offset with seconds.
MINUTES = ["29-Mar-2026 01:59", "29-Mar-2026 02:00", "29-Mar-2026 03:00", "25-Oct-2026 02:30", "01-Jan-1971 12:00",
           "21-Nov-2026 04:48", "21-nov-2026 04:48", "31-Feb-2026 04:48"]  # fmt: skip
SECONDS = ["00", "07", "59", "60", "99", "5a", "٣٧"]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Africa/Monrovia"])
def test_seconds_the_loop_has_not_seen_are_built_from_their_minute_alike(fast: ModuleType, zone: str) -> None:
    """Each minute's first line converts it; the loop builds the other seconds from it, 60 and more refused."""
    error = b"client @0x7f 192.0.2.1#53 (example.com): error sending response: would block"
    lines = [Line(f"{minute}:{second}.123 ".encode() + error) for minute in MINUTES for second in SECONDS]
    assert_alike([lines, lines[::-1]], zone=zone)


@st.composite
def hostile_lines(draw: st.DrawFn) -> Line:
    raw = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(0, 3))):
        mutate = draw(st.sampled_from(MUTATIONS))
        junk = draw(st.one_of(st.binary(max_size=20), st.text(max_size=20).map(lambda t: t.encode())))
        raw = mutate(raw, draw(st.integers(0, 300)), junk)
    host, time = draw(st.sampled_from(TRANSPORT))
    return Line(raw, draw(st.sampled_from([None, "a.log"])), draw(st.integers(0, 10**12)), host,
                draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()), time)  # fmt: skip


@HOSTILE
@given(st.lists(st.one_of(hostile_lines(), st.binary(max_size=300).map(Line)), min_size=1, max_size=12))
def test_hostile_batches_parse_alike(fast: ModuleType, lines: list[Line]) -> None:
    """After the seeds, whose reasons the caches then know: a mutation that keeps its reason reaches C's checks."""
    assert_alike([[Line(raw) for raw in SEEDS], lines, lines + lines], host="default.example")


def test_every_mutation_of_every_seed_parses_alike(fast: ModuleType) -> None:
    """Each mutation alone on each seed, at both sides of its limit: no luck needed to reach a check."""
    lines = [Line(mutate(raw, n, b"\xc3(junk")) for raw in SEEDS for mutate in MUTATIONS for n in (0, 1, 2, 7)]
    assert_alike([[Line(raw) for raw in SEEDS], lines], host="default.example")


def hostile_batch(count: int) -> list[Line]:
    """The mutations above drawn at random, reproducibly: every road through the loop, in one batch."""
    rng = random.Random(14)
    lines = []
    for number in range(count):
        raw = rng.choice(SEEDS)
        for _ in range(rng.randrange(3)):
            raw = rng.choice(MUTATIONS)(raw, rng.randrange(300), rng.randbytes(rng.randrange(20)))
        host, time = rng.choice(TRANSPORT)
        lines.append(Line(raw, "a.log", number, host, number % 97 == 0, time))
    return lines


def allocated_blocks(run: Callable[[], object], rounds: int) -> Iterator[int]:
    for _ in range(rounds):
        run()
        yield sys.getallocatedblocks()


def test_the_compiled_loop_keeps_no_reference(fast: ModuleType) -> None:
    """Every road (events, hand-overs, no candidate) run a hundred thousand times leaves no object behind."""
    with mock.patch.dict(os.environ, {PURE_PYTHON_ENV: "0"}):
        parse = ParseLines(make_parser(), Stats(), "default.example", io.BytesIO(), lambda r, line: None)
    lines = hostile_batch(1000)
    assert isinstance(parse._loop, fast.Loop)
    blocks = list(allocated_blocks(functools.partial(parse, lines), 100))
    assert blocks[-1] - blocks[10] < 1000, blocks  # a leak of one object per line would be 90,000


def test_parse_prints_the_same_bytes_on_both_loops(fast: ModuleType, tmp_path: Path) -> None:
    outputs = []
    for pure in ("0", "1"):
        rejects = tmp_path / f"rejects-{pure}.ndjson"
        args = ["parse", "--format", "flat", "--timezone", "UTC", "--stats", "--rejects", str(rejects)]
        done = subprocess.run([sys.executable, "-m", "named_senderr", *args, *map(str, FIXTURES)], capture_output=True,
                              env={**os.environ, PURE_PYTHON_ENV: pure}, timeout=120, check=True)  # fmt: skip
        summary = re.sub(rb" in [0-9.]+ s \([0-9,]+ lines/s\)", b"", done.stderr)  # the clock's part
        outputs.append((done.stdout, summary, rejects.read_bytes()))
    assert outputs[0] == outputs[1] and outputs[0][0].count(b"\n") > 1000


# PCRE2 (where the module was built with it): printable-ASCII lines are matched by its JIT on the same sources.


@pytest.fixture(scope="module")
def pcre2(fast: ModuleType) -> ModuleType:
    if not fast.PCRE2:
        message = f"{MODULE} was built without PCRE2 (libpcre2-dev, tests/setup-tools installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return fast


def pcre2_loop(parser: NamedLineParser) -> Any:  # the C Loop, with its PCRE2 counters
    with mock.patch.dict(os.environ, {PURE_PYTHON_ENV: "0"}):
        loop = compiled_loop(parser, functools.partial(parse_line, parser))
    assert loop is not None
    return loop


def test_pcre2_matches_every_pattern_on_ascii_lines(pcre2: ModuleType) -> None:
    parser = make_parser()
    loop = pcre2_loop(parser)
    assert (loop.pcre2_patterns, loop.pcre2_refused) == (len(parser.patterns), ())
    events, _ = loop(generated(2000, 1.0, "9.18"), None, INGESTED)
    assert loop.pcre2_lines == len(events) == 2000


def test_lines_with_other_bytes_keep_re(pcre2: ModuleType) -> None:
    """A non-ASCII byte, a control character: Python's \\s and PCRE2's differ there, so re matches them."""
    loop = pcre2_loop(make_parser())
    seed = SEEDS[-4]  # a named-native line, ASCII
    lines = [Line(seed.replace(b"(api", b"(\xc3\xa9pi")), Line(seed.replace(b" send failed", b"\x1c send failed"))]
    loop([*lines, Line(seed)], None, INGESTED)
    assert loop.pcre2_lines == 1


def test_a_pattern_pcre2_refuses_stays_on_re_and_is_said_once(
    pcre2: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    fast_py.say_refused.cache_clear()
    with mock.patch.object(fast_py, "pcre2_source", lambda source: source + "("):  # unbalanced: refused
        loops = [pcre2_loop(make_parser()) for _ in range(2)]
        assert_alike(chunks(generated(2000, 1.0, "9.11")))
    assert loops[0].pcre2_patterns == 0 and len(loops[0].pcre2_refused) == len(make_parser().patterns)
    said = [r.getMessage() for r in caplog.records if "stays on Python's re" in r.getMessage()]
    assert len(said) == len(make_parser().patterns) and "PCRE2 refused it" in said[0], said


def test_pcre2_source_passes_only_syntax_both_engines_read_alike() -> None:
    assert all(fast_py.pcre2_source(pattern.source) == pattern.source for pattern in make_parser().patterns)
    refused = [r"a\b", r"a\Z", r"\x41", r"(?i)a", r"(?P<x>a)(?P=x)", r"(?#c)a", "é"]
    assert [fast_py.pcre2_source(source) for source in refused] == [None] * len(refused)


# ASCII-only hostile input: every byte printable or a tab, so both engines are hit on the same line.
ASCII_SEEDS = [raw for raw in SEEDS if raw.isascii() and all(b >= 0x20 or b == 9 for b in raw)]
ASCII_JUNK = st.text(alphabet=[*map(chr, range(0x20, 0x7F)), "\t"], max_size=20)
PIECES = [
    " ", "\t", "  ", "(", ")", "\\", "\\(", ":", ": ", "'", '"', "[", "]", "#", "@", "%", "/", "#53", "::",
    "view ", "view a:b: ", "view in:ternal: c: ", "message repeated 3 times: [ ", "message repeated 12 times: [",
    "transfer of 'example.com/IN': ", "transfer of 'a b/CH': ", "internal_send: ", "internal_send: 192.0.2.1#53: ",
    "error sending response: ", "send failed: ", "send exceeded maximum size: ", "sending zone data: ", "send: ",
    "Sending UDP messages failed: ", "netmgr 0x7f: ", "client @0x1 ", "client ", "(no-peer)", "/key k\\ ey ",
    "%eth0", "debug 3: ", "security: ", "error: ", "MESSAGE=", "host unreachable", "would block",
]  # fmt: skip


def ascii_mutation(raw: bytes, at: int, piece: str, junk: str, how: int) -> bytes:
    at %= len(raw) + 1
    text = [piece, junk, piece + junk][how % 3].encode()
    if how % 2:
        return raw[:at] + text + raw[at + len(text) :]  # overwritten
    return raw[:at] + text + raw[at:]  # inserted


@st.composite
def ascii_hostile_lines(draw: st.DrawFn) -> Line:
    raw = draw(st.sampled_from(ASCII_SEEDS))
    for _ in range(draw(st.integers(0, 4))):
        piece, junk = draw(st.sampled_from(PIECES)), draw(ASCII_JUNK)
        raw = ascii_mutation(raw, draw(st.integers(0, 400)), piece, junk, draw(st.integers(0, 5)))
    if draw(st.booleans()):
        raw = raw.rsplit(b": ", 1)[0] + b": " + draw(st.sampled_from([b"host unreachable", b"would block"]))
    return Line(raw, "a.log", draw(st.integers(0, 10**6)))


@HOSTILE
@given(st.lists(ascii_hostile_lines(), min_size=1, max_size=12))
def test_ascii_hostile_batches_parse_alike(pcre2: ModuleType, lines: list[Line]) -> None:
    assert_alike([[Line(raw) for raw in SEEDS], lines, lines], host="default.example")


def re_fields(regex: re.Pattern[str], text: str) -> tuple[str | None, ...] | None:
    found = regex.match(text)
    return None if found is None else tuple(found.group(n) if n in regex.groupindex else None for n in FIELDS)


def test_pcre2_fields_equal_re_fields_on_every_pattern(pcre2: ModuleType) -> None:
    """Match or not, every field: each pattern on ASCII lines mutated at random, and on the seeds of every kind."""
    parser = make_parser()
    loop, rng = pcre2_loop(parser), random.Random(14)
    lines = [*ASCII_SEEDS, *generated_bytes()]
    for _ in range(20000):
        raw = rng.choice(lines[:40])
        for _ in range(rng.randrange(4)):
            junk = "".join(rng.choice(" \t()\\:'\"[]#@%/.-aZ09") for _ in range(rng.randrange(8)))
            raw = ascii_mutation(raw, rng.randrange(400), rng.choice(PIECES), junk, rng.randrange(6))
        lines.append(raw)
    matched = [0] * len(parser.patterns)
    for raw in lines:
        for index, pattern in enumerate(parser.patterns):
            expected = re_fields(pattern.regex, raw.decode())
            assert loop.pcre2_fields(index, raw) == expected, (index, raw)
            matched[index] += expected is not None
    assert min(matched) > 0, matched  # every pattern met lines it matches, and lines it does not


def generated_bytes() -> list[bytes]:
    return [line.data.rstrip(b"\r\n") for line in generated(2000, 0.5, "9.18")]


def test_re_compiles_no_pattern_while_pcre2_matches_and_new_reason_texts_are_classified_in_place(
    pcre2: ModuleType,
) -> None:
    """Compiling the four patterns for ``re`` cost 16 ms of every start; where PCRE2 serves, none is compiled:
    a reason text not seen yet goes to ``classify``, not the whole line to the reference."""
    parser = make_parser()
    events, _ = pcre2_loop(parser)(generated(2000, 1.0, "9.18"), None, INGESTED)
    assert len(events) == 2000
    assert [pattern.name for pattern in parser.patterns if "regex" in vars(pattern)] == []
    assert len(parser._reasons) > 1  # each text seen was classified and kept

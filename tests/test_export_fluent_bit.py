"""The generated Fluent Bit pipeline run by a real Fluent Bit, when one is installed.

Debian does not package Fluent Bit (``apt-cache policy fluent-bit`` has no
candidate), so these tests look for a binary on PATH, in
/opt/fluent-bit/bin (the vendor's packages), in $NAMED_SENDERR_FLUENT_BIT or
in ~/.cache/named-senderr/fluent-bit/, and skip, even under CI, without one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from named_senderr.event import Event, to_flat
from named_senderr.export import fluent_bit
from tests.corpus import OPTIONAL_KEYS, REAL_NAMED, REQUIRED_KEYS
from tests.parsing import make_parser
from tests.test_export import seen_corpus
from tests.test_tail_cli import DEADLINE, Process

EXT = {"yaml": "yaml", "classic": "conf"}

CANDIDATES = (
    os.environ.get("NAMED_SENDERR_FLUENT_BIT", ""),
    os.environ.get("FLUENT_BIT", ""),  # the name tests/test_forward_fluentbit.py reads
    shutil.which("fluent-bit") or "",
    "/opt/fluent-bit/bin/fluent-bit",
    str(Path.home() / ".cache" / "named-senderr" / "fluent-bit" / "fluent-bit"),
)


@pytest.fixture(scope="module")
def fluent_bit_binary() -> str:
    for path in CANDIDATES:
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip("no Fluent Bit binary: Debian does not package it; put fluent-bit on PATH or set FLUENT_BIT")


def read_once(config: str, fmt: str, log: Path) -> str:
    """The generated pipeline with its tail on ``log``, read from the start, exiting at its end."""
    config = config.replace(fluent_bit.TAIL_PATH, str(log))
    if fmt == "yaml":
        return re.sub(r"\n      db: .*", "\n      read_from_head: true\n      exit_on_eof: true", config)
    return re.sub(r"\n    db .*", "\n    read_from_head     true\n    exit_on_eof        true", config)


def to_file(config: str, fmt: str, out: Path) -> str:
    """The pipeline with its outputs replaced by one file output: ``TAG: [TIME, RECORD]`` per line."""
    if fmt == "yaml":
        head = config[: config.index("  outputs:")]
        return head + f"  outputs:\n    - name: file\n      match: '*'\n      path: {out}\n      file: out.jsonl\n"
    head = config[: config.index("[OUTPUT]")]
    return head + f"[OUTPUT]\n    name   file\n    match  *\n    path   {out}\n    file   out.jsonl\n"


def write_files(tmp_path: Path, fmt: str, lines: list[bytes]) -> tuple[dict[str, str], Path]:
    files = fluent_bit.render(fmt)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    log = tmp_path / "named.log"
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    return files, log


def run_pipeline(binary: str, tmp_path: Path, fmt: str, lines: list[bytes]) -> list[tuple[float, dict]]:
    """(time, record) of every record out of the generated native pipeline, run in UTC."""
    files, log = write_files(tmp_path, fmt, lines)
    config = tmp_path / f"test.{EXT[fmt]}"
    config.write_text(to_file(read_once(files[f"fluent-bit.{EXT[fmt]}"], fmt, log), fmt, tmp_path))
    environment = os.environ | {"TZ": "UTC"}
    result = subprocess.run(
        [binary, "-c", str(config)], capture_output=True, timeout=60, check=False, cwd="/", env=environment
    )
    assert result.returncode == 0, result.stdout.decode()[-2000:] + result.stderr.decode()[-2000:]
    output = (tmp_path / "out.jsonl").read_bytes().decode("utf-8", "replace")
    return [tuple(json.loads(line.split(": ", 1)[1])) for line in output.splitlines()]


def python_events(lines: list[bytes]) -> dict[int, Event]:
    """Events by the offset of their line; in UTC and on the real clock, as Fluent Bit runs."""
    parser, events, offset = make_parser("UTC", datetime.now(UTC)), {}, 0
    for line in lines:
        result = parser.parse_bytes(line)
        if isinstance(result, Event):
            events[offset] = result
        offset += len(line) + 1
    return events


def as_python_reads(value: object) -> object:
    """Fluent Bit writes an invalid UTF-8 byte 0xHH as U+E0HH; Python's parser as U+FFFD."""
    return re.sub("[\ue000-\ue0ff]", "\ufffd", value) if isinstance(value, str) else value


@pytest.mark.parametrize("fmt", fluent_bit.FORMATS)
def test_fluent_bit_with_the_generated_parsers_and_lua_gives_the_python_events(fluent_bit_binary, tmp_path, fmt):
    lines = [s.case.line_bytes for s in seen_corpus() if not s.journal]
    lines += [line for path in sorted(REAL_NAMED.glob("*.log")) for line in path.read_bytes().splitlines()]
    records = run_pipeline(fluent_bit_binary, tmp_path, fmt, lines)
    expected = python_events(lines)
    assert sorted(r["offset"] for _, r in records) == sorted(expected)
    differ = []
    for time, record in records:
        event = expected[record["offset"]]
        want = to_flat(event)
        for field in (*REQUIRED_KEYS, *OPTIONAL_KEYS, "hint"):
            if as_python_reads(record.get(field)) != want[field]:
                differ.append((record["log"], field, record.get(field), want[field]))
        if event.timestamp and abs(time - datetime.fromisoformat(event.timestamp).timestamp()) > 1e-6:
            differ.append((record["log"], "time", time, event.timestamp))
    assert differ == []
    corpus_positives = sum(1 for s in seen_corpus() if not s.journal and s.case.expect is not None)
    real = [line for path in sorted(REAL_NAMED.glob("*.log")) for line in path.read_bytes().splitlines()]
    assert len(records) == corpus_positives + len(python_events(real))  # every positive, nothing more


@pytest.mark.parametrize(
    "name", ["fluent-bit.yaml", "fluent-bit.conf", "fluent-bit-forward.yaml", "fluent-bit-forward.conf"]
)
def test_generated_pipeline_passes_fluent_bit_dry_run(fluent_bit_binary, tmp_path, name):
    for fmt in fluent_bit.FORMATS:
        for file_name, text in fluent_bit.render(fmt).items():
            (tmp_path / file_name).write_text(text)
    result = subprocess.run(
        [fluent_bit_binary, "--dry-run", "-c", str(tmp_path / name)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"configuration test is successful" in result.stdout + result.stderr


@pytest.mark.parametrize("fmt", fluent_bit.FORMATS)
def test_forward_pipeline_delivers_every_send_error_to_named_senderr_serve(fluent_bit_binary, tmp_path, fmt):
    lines = [line for path in sorted(REAL_NAMED.glob("*.log")) for line in path.read_bytes().splitlines()]
    files, log = write_files(tmp_path, fmt, lines)
    serve = Process("serve", "--forward", "127.0.0.1:0", "--format", "flat")
    try:
        port = re.search(rb"listening for Forward frames on 127\.0\.0\.1:(\d+)", serve.stderr.get(timeout=DEADLINE))
        assert port, "serve did not say where it listens"
        config = tmp_path / f"test.{EXT[fmt]}"
        config.write_text(
            read_once(files[f"fluent-bit-forward.{EXT[fmt]}"], fmt, log).replace("24224", port.group(1).decode())
        )
        result = subprocess.run([fluent_bit_binary, "-c", str(config)], capture_output=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        events = serve.events(len(python_events(lines)))
    finally:
        assert serve.stop() == 0
    delivered = sorted((e["message"], e["reason"], e["client_port"] or 0) for e in events)
    assert delivered == sorted((e.message, e.reason, e.client_port or 0) for e in python_events(lines).values())
    assert serve.stdout.empty()

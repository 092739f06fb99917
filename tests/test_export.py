"""``named-senderr export``: generated from patterns/ and reasons.py, and conf/ is exactly that.

Also the helpers the other export tests share: the external interpreters
(skipped when absent, a failure under CI=true) and the corpus as each
pipeline would see it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from named_senderr.errors import PatternError
from named_senderr.export import fluent_bit, ingest_pipeline, logstash
from named_senderr.export.source import onigmo_patterns, to_onigmo
from named_senderr.parse.grok import load_line_patterns
from tests.corpus import Case, load_cases

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
HAND_WRITTEN = {"README.md"}


def tool(*names: str, install: str) -> str:
    """Path of the first of ``names`` on PATH; skip without it, fail under CI=true."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"{' / '.join(names)} not installed ({install}, or tests/setup-tools as root): the export cannot be checked against it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Seen:
    """A corpus line as a native pipeline receives it, and what the Python regexes make of it."""

    case: Case
    text: str  # tail's line (CR stripped, invalid UTF-8 replaced) or journald's MESSAGE
    journal: dict  # the other journald fields, for journal JSON lines
    pattern: str | None  # first top-level pattern that matches, in file order
    captures: dict  # its non-empty captures: what Fluent Bit puts in the record


def seen_corpus() -> list[Seen]:
    patterns = load_line_patterns()
    seen = []
    for case in load_cases():
        text = case.line_bytes.decode("utf-8", "replace").rstrip("\r\n")
        journal: dict = {}
        if text.startswith("{"):
            journal = json.loads(text)
            message = journal.pop("MESSAGE")
            text = bytes(message).decode("utf-8", "replace") if isinstance(message, list) else message
        pattern, captures = None, {}
        for p in patterns:
            m = p.regex.match(text)
            if m:
                pattern, captures = p.name, {k: v for k, v in m.groupdict().items() if v}
                break
        seen.append(Seen(case, text, journal, pattern, captures))
    return seen


def export(target: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "named_senderr", "export", target, *args, "-o", str(out)],
        capture_output=True,
        timeout=120,
        check=True,
    )


@pytest.mark.parametrize(
    ("directory", "rendered"),
    [
        ("fluent-bit", lambda: fluent_bit.render("yaml") | fluent_bit.render("classic")),
        ("logstash", logstash.render),
        ("elasticsearch", ingest_pipeline.render),
    ],
)
def test_conf_holds_exactly_what_export_generates_today(directory, rendered):
    fresh = rendered()
    stale = [name for name, text in fresh.items() if not (CONF / directory / name).is_file()]
    stale += [
        name for name, text in fresh.items() if name not in stale and (CONF / directory / name).read_text() != text
    ]
    fix = f"named-senderr export {'fluent-bit --format yaml|classic' if directory == 'fluent-bit' else directory}"
    assert not stale, (
        f"conf/{directory}: {stale} differ from a fresh export; regenerate with `{fix} -o conf/{directory}`"
    )
    if directory != "elasticsearch":  # conf/elasticsearch also holds the index template and policies
        present = {str(p.relative_to(CONF / directory)) for p in (CONF / directory).rglob("*") if p.is_file()}
        assert present - set(fresh) <= HAND_WRITTEN


def test_export_writes_every_file_into_the_output_directory(tmp_path):
    result = export("fluent-bit", tmp_path, "--format", "classic")
    assert sorted(os.listdir(tmp_path)) == sorted(fluent_bit.render("classic"))
    assert b"wrote" in result.stderr


def test_export_of_one_file_without_output_directory_is_plain_stdout():
    result = subprocess.run(
        [sys.executable, "-m", "named_senderr", "export", "ingest-pipeline"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout)["processors"][0]["grok"]["field"] == "message"


def test_every_top_level_pattern_becomes_one_anchored_onigmo_parser():
    patterns = onigmo_patterns()
    assert [p.grok_name for p in patterns] == [p.name for p in load_line_patterns()]
    for p in patterns:
        assert p.regex.startswith(r"\A") and p.regex.endswith(r"\Z")
        assert "(?P" not in p.regex and r"[^\W\d_]" not in p.regex
        assert len(p.captures) == len(set(p.captures)), "Fluent Bit keys must be unique per parser"


def test_python_only_syntax_is_refused_naming_the_pattern():
    with pytest.raises(PatternError, match=r"NAMED_SENDERR_X uses '\(\?P='"):
        to_onigmo("NAMED_SENDERR_X", "(^(?P<a>x)(?P=a)$)")


def test_unanchored_pattern_is_refused():
    with pytest.raises(PatternError, match="must be anchored"):
        to_onigmo("NAMED_SENDERR_X", "(x)")


def test_ingest_pipeline_inlines_every_definition_with_prefixed_captures():
    grok = ingest_pipeline.pipeline()["processors"][0]["grok"]
    definitions = grok["pattern_definitions"]
    captures = re.findall(r"%\{\w+:([\w.]+)\}", " ".join(definitions.values()))
    assert captures and all(c.startswith("named_senderr.") for c in captures)
    assert all(re.fullmatch(r"%\{NAMED_SENDERR_\w+\}", p) for p in grok["patterns"])


def test_every_corpus_positive_is_matched_by_a_python_pattern_as_a_native_pipeline_sees_it():
    """The premise of the native-pipeline tests: the regex captures carry the whole event."""
    missing = [s.case.line for s in seen_corpus() if s.case.expect is not None and s.pattern is None]
    assert missing == []

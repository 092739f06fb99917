"""The Fluent Bit regexes under Onigmo itself (Ruby's engine, the one Fluent Bit links).

Every corpus positive must match a regex with exactly the captures Python's
``re`` gives; every negative must match none, except the one hostile line the
regex cannot reject on its own (port 70000 has the shape of a port), which
the Lua normalizer drops (tests/test_export_lua.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from named_senderr.export.source import onigmo_patterns
from named_senderr.parse.grok import load_line_patterns
from tests.corpus import REAL_NAMED
from tests.test_export import seen_corpus, tool

# Reads [name, regex] pairs, then one JSON array [text] per line; prints which regexes
# match and the non-empty named captures of the first, as Fluent Bit keeps them.
MATCHER = r"""
require "json"
patterns = JSON.parse(File.read(ARGV[0])).map { |name, source| [name, Regexp.new(source)] }
File.foreach(ARGV[1]) do |row|
  text = JSON.parse(row)[0]
  matched = patterns.select { |_, re| re.match?(text) }
  first = matched.empty? ? nil : matched[0][1].match(text)
  captures = first ? first.named_captures.reject { |_, v| v.nil? || v.empty? } : {}
  puts JSON.generate({ "matched" => matched.map(&:first), "captures" => captures })
end
"""
# The negatives whose lines have the shape the regex accepts (port 70000); the parser rejects them after the match.
REGEX_CANNOT_REJECT = {
    "client 192.0.2.29#70000: error sending response: unset",
    "Mar 01 00:00:01 ns1 named[12]: internal_send: 192.0.2.7#70000: Message too long",
}


@pytest.fixture(scope="module")
def onigmo(tmp_path_factory):
    ruby = tool("ruby", install="apt-get install -y ruby")
    work = tmp_path_factory.mktemp("onigmo")
    regexes = work / "regexes.json"
    regexes.write_text(json.dumps([[p.grok_name, p.regex] for p in onigmo_patterns()]))
    script = work / "match.rb"
    script.write_text(MATCHER)

    def run(texts: list[str]) -> list[dict]:
        lines = work / "lines.jsonl"
        lines.write_text("".join(json.dumps([t]) + "\n" for t in texts))
        result = subprocess.run([ruby, "-w", script, regexes, lines], capture_output=True, timeout=120, check=True)
        assert result.stderr == b"", result.stderr.decode()
        return [json.loads(line) for line in result.stdout.splitlines()]

    return run


PATTERNS = load_line_patterns()


def python_matches(text: str) -> tuple[list[str], dict]:
    matched = [p for p in PATTERNS if p.regex.match(text)]
    captures = {k: v for k, v in matched[0].regex.match(text).groupdict().items() if v} if matched else {}
    return [p.name for p in matched], captures


def test_regexes_compile_in_onigmo_without_warnings(onigmo):
    assert onigmo(["no send error here"]) == [{"matched": [], "captures": {}}]


def test_every_corpus_positive_matches_with_the_captures_python_gives(onigmo):
    seen = [s for s in seen_corpus() if s.case.expect is not None]
    results = onigmo([s.text for s in seen])
    wrong = [
        (s.text, result)
        for s, result in zip(seen, results, strict=True)
        if not result["matched"] or result["matched"][0] != s.pattern or result["captures"] != s.captures
    ]
    assert wrong == []


def test_corpus_negatives_match_no_regex_but_the_port_70000_line(onigmo):
    seen = [s for s in seen_corpus() if s.case.expect is None]
    results = onigmo([s.text for s in seen])
    matched = {s.text for s, result in zip(seen, results, strict=True) if result["matched"]}
    assert matched == REGEX_CANNOT_REJECT


def test_real_named_logs_match_line_for_line_as_in_python(onigmo):
    texts = [line for path in sorted(REAL_NAMED.glob("*.log")) for line in path.read_text().splitlines()]
    results = onigmo(texts)
    assert len(results) == len(texts) > 3000
    differ = [t for t, r in zip(texts, results, strict=True) if (r["matched"], r["captures"]) != python_matches(t)]
    assert differ == []
    assert sum(bool(r["matched"]) for r in results) == 282  # the send errors of both runs


def test_onigmo_anchors_do_not_match_a_send_error_on_a_second_line(onigmo):
    """Onigmo's ^ and $ are line anchors; the export uses \\A and \\Z as Python's match() does."""
    line = "client 192.0.2.7#5353: error sending response: would block"
    first, second, alone = onigmo([f"noise\n{line}", f"{line}\nnoise", line])
    assert first["matched"] == second["matched"] == []
    assert alone["matched"] == ["NAMED_SENDERR_CHANNEL"]


def test_localized_month_names_match_as_unicode_letters(onigmo):
    line = "Mär  2 08:15:27 dns2 named[488]: client 192.0.2.7#5353: error sending response: would block"
    [result] = onigmo([line])
    assert result["captures"]["log_time"] == "Mär  2 08:15:27"

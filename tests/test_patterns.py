"""The Grok files: loadable by pygrok as they are, and portable to Logstash and Fluentd."""

from __future__ import annotations

import json
import re

from pygrok import Grok

from named_senderr.parse.grok import TOP_LEVEL_PREFIX, load_line_patterns, patterns_dir, read_definitions
from tests.corpus import load_cases

POSITIVE = "Oct 21 10:22:33 ns1 named[1234]: client @0x7f 192.0.2.125#48518 (www.example.com): view ext: error sending response: would block"


def test_pygrok_itself_loads_the_files_and_matches_a_send_error():
    grok = Grok("%{NAMED_SENDERR_SYSLOG}", custom_patterns_dir=str(patterns_dir()))
    match = grok.match(POSITIVE)
    assert match["client_ip"] == "192.0.2.125"
    assert match["reason_text"] == "would block"
    assert match["host"] == "ns1"


def test_every_corpus_positive_matches_one_top_level_pattern_in_pygrok():
    groks = [Grok("%{" + p.name + "}", custom_patterns_dir=str(patterns_dir())) for p in load_line_patterns()]
    for case in load_cases():
        if case.expect is None or case.line.startswith("{") or "<0x" in case.line:
            continue
        line = case.line.rstrip("\r")
        assert any(g.match(line) for g in groks), line


def test_capture_names_are_plain_words_without_types():
    for name, regex in read_definitions(patterns_dir()).items():
        for capture in re.findall(r"%\{(\w+)(?::([^}]*))?\}", regex):
            assert capture[1] == "" or re.fullmatch(r"[a-z_]+", capture[1]), (name, capture)


def test_no_inline_named_groups_that_only_some_engines_accept():
    for name, regex in read_definitions(patterns_dir()).items():
        assert "(?P<" not in regex and "(?<" not in regex.replace("(?<=", "").replace("(?<!", ""), name


def test_no_capture_name_repeats_inside_a_top_level_pattern():
    for pattern in load_line_patterns():
        names = re.findall(r"\(\?P<(\w+)>", pattern.regex.pattern)
        assert len(names) == len(set(names)), pattern.name


def test_top_level_patterns_are_anchored():
    for pattern in load_line_patterns():
        assert pattern.name.startswith(TOP_LEVEL_PREFIX)
        assert pattern.grok.startswith("^") and pattern.grok.endswith("$")


def test_a_pattern_cache_file_made_from_other_definitions_is_not_used(tmp_path, monkeypatch):
    """The cache file is named by a CRC of the definitions: a collision must be a miss, never a wrong pattern."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    right = [p.regex.pattern for p in load_line_patterns()]
    (cache_file,) = (tmp_path / "named-senderr").glob("patterns-v3-*.json")
    forged = json.loads(cache_file.read_text())
    forged["definitions"]["NAMED_SENDERR_OTHER"] = "other"
    forged["prepared"] = {name: {**entry, "source": "forged"} for name, entry in forged["prepared"].items()}
    cache_file.write_text(json.dumps(forged))
    assert [p.regex.pattern for p in load_line_patterns()] == right


def test_a_pattern_cache_entry_of_the_wrong_shape_is_a_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    right = [(p.source, p.groupindex, p.groups) for p in load_line_patterns()]
    (cache_file,) = (tmp_path / "named-senderr").glob("patterns-v3-*.json")
    broken = json.loads(cache_file.read_text())
    first = next(iter(broken["prepared"]))
    broken["prepared"][first]["groups"] = "many"
    cache_file.write_text(json.dumps(broken))
    assert [(p.source, p.groupindex, p.groups) for p in load_line_patterns()] == right


def test_each_pattern_knows_its_captures_as_re_numbers_them():
    for pattern in load_line_patterns():
        assert (pattern.groupindex, pattern.groups) == (dict(pattern.regex.groupindex), pattern.regex.groups)

"""The on-disk cache of compiled line patterns gives exactly what ``re.compile`` gives, or is not used."""

from __future__ import annotations

import json
import re

from named_senderr.parse.grok import load_line_patterns
from named_senderr.parse.regex_cache import compile_cached

SOURCES = [r"(?P<client>\d+)#(?P<port>\d+)(?:: (?P<reason>.*)|)", r"x+(?P<tail>y)?"]


def cache_file(directory):
    (found,) = directory.glob("regex-v1-*.json")
    return found


def test_patterns_from_the_cache_equal_what_re_compiles(tmp_path):
    compile_cached(SOURCES, tmp_path)  # fills the cache
    cached = compile_cached(SOURCES, tmp_path)
    assert cached == [re.compile(source) for source in SOURCES]  # Pattern equality compares the opcodes
    assert cached[0].match("192#53: refused").groupdict() == {"client": "192", "port": "53", "reason": "refused"}
    assert cache_file(tmp_path).stat().st_size > 0


def test_the_line_patterns_from_the_cache_equal_what_re_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    load_line_patterns()
    patterns = load_line_patterns()
    assert cache_file(tmp_path / "named-senderr")
    assert [p.regex for p in patterns] == [re.compile(p.regex.pattern) for p in patterns]


def test_a_damaged_cache_file_is_a_miss(tmp_path):
    compile_cached(SOURCES, tmp_path)
    cache_file(tmp_path).write_text("{not json")
    assert compile_cached(SOURCES, tmp_path) == [re.compile(source) for source in SOURCES]


def test_opcodes_the_engine_refuses_are_a_miss(tmp_path):
    compile_cached(SOURCES, tmp_path)
    path = cache_file(tmp_path)
    cached = json.loads(path.read_text())
    for entry in cached["compiled"]:
        entry[1] = [999, 1, 2]  # no such opcode
    path.write_text(json.dumps(cached))
    assert compile_cached(SOURCES, tmp_path) == [re.compile(source) for source in SOURCES]


def test_a_cache_made_for_other_patterns_is_not_used(tmp_path):
    """The file is named by a CRC of its key: a collision must be a miss, never another pattern."""
    compile_cached(SOURCES[::-1], tmp_path)
    other = cache_file(tmp_path)
    compile_cached(SOURCES, tmp_path)
    mine = next(path for path in tmp_path.glob("regex-v1-*.json") if path != other)
    mine.write_text(other.read_text())  # the right name, another key and other opcodes
    assert compile_cached(SOURCES, tmp_path) == [re.compile(source) for source in SOURCES]

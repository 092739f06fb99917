"""The line patterns' compiled form kept on disk: ``re`` would spend ~10 ms of every start on it.

CPython compiles a pattern into opcodes for its ``_sre`` engine and hands them
to ``_sre.compile``; that last step costs nothing. The opcodes are saved here,
keyed by the exact interpreter version, the engine's MAGIC number and the
pattern texts, and given back to ``_sre.compile`` on the next start. Another
interpreter, a changed pattern or a damaged file is a miss and ``re`` compiles
as usual: the cache can make start-up slower, never a pattern different
(tests/test_regex_cache.py compares what it gives with ``re.compile``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import zlib
from pathlib import Path

try:  # CPython's own; any other interpreter simply compiles every time
    import _sre
    from re import _compiler, _parser
except ImportError:  # pragma: no cover - not CPython 3.11+
    _sre = None


def compile_cached(sources: list[str], cache_dir: Path) -> list[re.Pattern[str]]:
    """``re.compile`` of each source, from ``cache_dir`` when it holds them compiled by this interpreter."""
    if _sre is None:
        return [re.compile(source) for source in sources]
    key = json.dumps([sys.version, _sre.MAGIC, sources])
    cache_file = cache_dir / f"regex-v1-{zlib.crc32(key.encode()):08x}.json"
    try:
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
        if cached["key"] == key:  # a CRC collision is a miss
            return [_rebuild(source, *entry) for source, entry in zip(sources, cached["compiled"], strict=True)]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):  # RuntimeError: _sre refused the code
        pass
    compiled = [re.compile(source) for source in sources]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "compiled": [_opcodes(s) for s in sources]}), encoding="utf-8")
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only home only costs the compiling on every start
    return compiled


def _opcodes(source: str) -> list:
    """What ``re._compiler.compile`` hands ``_sre.compile``, as JSON can hold it."""
    parsed = _parser.parse(source, 0)
    return [parsed.state.flags, _compiler._code(parsed, 0), parsed.state.groups - 1, parsed.state.groupdict]


def _rebuild(source: str, flags: int, code: list[int], groups: int, groupindex: dict[str, int]) -> re.Pattern[str]:
    indexgroup: list[str | None] = [None] * (groups + 1)
    for name, index in groupindex.items():
        indexgroup[index] = name
    return _sre.compile(source, flags, code, groups, groupindex, tuple(indexgroup))

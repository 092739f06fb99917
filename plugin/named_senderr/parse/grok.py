"""Load the Grok files in ``patterns/`` and compile their top-level line patterns.

pygrok expands ``%{NAME:capture}`` references into one regular expression per
top-level pattern. Expanding costs a few milliseconds per pattern (pygrok
re-reads its own pattern library each time), so the expansions are cached on
disk keyed by the pattern files' content, rewritten for speed, with the index
of each capture; the hot path then runs them, anchored, through the standard
library's ``re``, each compiled when first used: where the C parse loop
matches with PCRE2 (parse/fast.py), ``re`` serves only the rare non-ASCII line,
and compiling the four for every start cost 16 ms.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from named_senderr.errors import PatternError

TOP_LEVEL_PREFIX = "NAMED_SENDERR_"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LinePattern:
    """One top-level pattern: its Grok name and source, the expression it expands to, and its captures."""

    name: str
    grok: str
    source: str  # the expanded expression, rewritten (``without_plain_groups``, ``optionals_as_branches``)
    groupindex: dict[str, int]  # ``re.compile(source).groupindex``, known without compiling
    groups: int  # ``re.compile(source).groups``

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        """Compiled at first use; the source compiled when the cache was made, so it compiles here too."""
        return re.compile(self.source)


def patterns_dir() -> Path:
    """Installed wheels carry the files inside the package; checkouts beside it."""
    for candidate in (_PACKAGE_DIR / "patterns", _PACKAGE_DIR.parent.parent / "patterns"):
        if candidate.is_dir():
            return candidate
    raise PatternError(
        f"no patterns directory found next to {_PACKAGE_DIR}; reinstall named-senderr "
        "or run it from a checkout that has patterns/"
    )


def read_definitions(directory: Path) -> dict[str, str]:
    """All ``NAME regex`` definitions of every file in ``directory``, in file order."""
    definitions: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _, regex = line.partition(" ")
            if not regex.strip() or not re.fullmatch(r"[A-Z0-9_]+", name):
                raise PatternError(f"{path}:{number}: expected 'NAME regex', got {raw!r}")
            definitions[name] = regex.strip()
    return definitions


def load_line_patterns(directory: Path | None = None) -> list[LinePattern]:
    """The ``NAMED_SENDERR_*`` patterns, in the order the files list them (each compiled when first used)."""
    directory = directory or patterns_dir()
    definitions = read_definitions(directory)
    names = [name for name in definitions if name.startswith(TOP_LEVEL_PREFIX)]
    if not names:
        raise PatternError(f"{directory}: no {TOP_LEVEL_PREFIX}* pattern defined")
    prepared = _prepared_cached(directory, definitions, names)
    return [LinePattern(name, definitions[name], **prepared[name]) for name in names]


def _prepare(directory: Path, name: str) -> dict:
    """The rewritten expression of ``name`` and its captures; compiled once, so a bad pattern fails here."""
    source = optionals_as_branches(without_plain_groups(expand(directory, name)))
    try:
        regex = re.compile(source)
    except re.error as exc:
        raise PatternError(f"pattern {name} does not compile: {exc}") from exc
    return {"source": source, "groupindex": dict(regex.groupindex), "groups": regex.groups}


def expand(directory: Path, name: str) -> str:
    """The regular expression pygrok builds for ``%{name}``."""
    from pygrok import Grok  # imported only on a cache miss: it costs ~25 ms

    try:
        return Grok("%{" + name + "}", custom_patterns_dir=str(directory)).regex_obj.pattern
    except KeyError as exc:
        raise PatternError(f"pattern {name} refers to undefined pattern {exc}") from exc


def without_plain_groups(regex: str) -> str:
    """Turn the unnamed ``(...)`` pygrok wraps around every reference into ``(?:...)``.

    Only named captures are read; every other group would cost match time and
    make ``groupdict`` slower.
    """
    plain = {index for index in _syntax(regex) if regex[index] == "(" and not regex.startswith("?", index + 1)}
    return "".join(char + "?:" if index in plain else char for index, char in enumerate(regex))


def optionals_as_branches(regex: str) -> str:
    """``(?:X)?`` as ``(?:X|)``, ``(?P<n>X)?`` as ``(?:(?P<n>X)|)``: the same matches and captures.

    Both try X first and then nothing, in the same order, but ``re`` runs an
    optional group through its repeat machinery, which saves every capture at
    each step; a branch is cheaper (about a fifth of a send-error line's match).
    Lazy (``??``) and possessive (``?+``) optionals and lookarounds stay as they are.
    """
    before: dict[int, str] = {}  # index -> text inserted before the character there
    instead: dict[int, str] = {}  # index -> what replaces the character there
    opens: list[int] = []
    for index in _syntax(regex):
        if regex[index] == "(":
            opens.append(index)
        elif regex[index] == ")":
            start = opens.pop()
            if not regex.startswith("?", index + 1) or regex.startswith(("??", "?+"), index + 1):
                continue
            if regex.startswith("(?:", start):
                instead[index], instead[index + 1] = "|)", ""
            elif regex.startswith("(?P<", start):
                before[start], instead[index], instead[index + 1] = "(?:", ")|)", ""
    return "".join(before.get(index, "") + instead.get(index, char) for index, char in enumerate(regex))


def _syntax(regex: str) -> Iterator[int]:
    """The indices of the characters that are syntax: neither escaped nor inside a character class."""
    escaped = False
    class_start = -1  # index of the "[" of the character class we are in, or -1
    for index, char in enumerate(regex):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif class_start >= 0:
            # "]" right after "[" or "[^" is a literal, not the end of the class
            if char == "]" and index > class_start + 1 + (regex[class_start + 1] == "^"):
                class_start = -1
        elif char == "[":
            class_start = index
        else:
            yield index


def _prepared_cached(directory: Path, definitions: dict[str, str], names: list[str]) -> dict[str, dict]:
    # Keyed by the definitions and the Python version (whose ``re`` compiled them) only: importing
    # importlib.metadata to ask for pygrok's version would cost more than the whole cache saves. The
    # file holds the definitions it was made from, so a CRC collision is a miss, not a wrong pattern
    # (hashlib would load OpenSSL at every start-up).
    source = json.dumps(definitions)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    cache_file = _cache_dir() / f"patterns-v3-py{python}-{zlib.crc32(source.encode()):08x}.json"
    try:
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
        prepared = cached["prepared"]
        unchanged = cached["definitions"] == definitions and sorted(prepared) == sorted(names)
        if unchanged and all(_is_prepared(entry) for entry in prepared.values()):
            return prepared
    except (OSError, ValueError, KeyError, TypeError):
        pass
    prepared = {name: _prepare(directory, name) for name in names}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"definitions": definitions, "prepared": prepared}), encoding="utf-8")
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only home only costs the expansion on every start
    return prepared


def _is_prepared(entry: object) -> bool:
    """A cache entry as ``_prepare`` writes it (a file edited by hand is a miss, not a crash)."""
    return (
        isinstance(entry, dict)
        and entry.keys() == {"source", "groupindex", "groups"}
        and isinstance(entry["source"], str)
        and isinstance(entry["groups"], int)
        and isinstance(entry["groupindex"], dict)
        and all(isinstance(k, str) and isinstance(v, int) for k, v in entry["groupindex"].items())
    )


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "named-senderr"

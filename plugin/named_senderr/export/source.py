"""What every export is generated from: the line patterns and the reason taxonomy.

The patterns are expanded by pygrok exactly as the parser expands them, then
translated into Onigmo, the Ruby-syntax engine of Fluent Bit and Logstash.
Only constructs known to mean the same in both engines pass; anything else
is an error naming the pattern, so a new pattern cannot be exported wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from named_senderr import reasons
from named_senderr.errors import PatternError
from named_senderr.event import DATASET, ECS_VERSION
from named_senderr.normalize import timestamp
from named_senderr.parse.grok import TOP_LEVEL_PREFIX, expand, patterns_dir, read_definitions, without_plain_groups

# Python's [^\W\d_] is "a Unicode letter" (localized month names); Onigmo's \w is
# ASCII-only under Ruby syntax, so the letter class is spelled as a property.
_TRANSLATIONS = ((r"[^\W\d_]", r"\p{L}"), ("(?P<", "(?<"))
_UNTRANSLATABLE = re.compile(r"\(\?P[=>]|\(\?[aiLmsux-]+[:)]|\\[ZAGNuU]|\(\?#")


@dataclass(frozen=True, slots=True)
class OnigmoPattern:
    """One top-level pattern as a Fluent Bit parser: name, anchored Onigmo regex, capture names."""

    grok_name: str
    regex: str
    captures: tuple[str, ...]

    @property
    def parser_name(self) -> str:
        return self.grok_name.lower()


@dataclass(frozen=True, slots=True)
class Taxonomy:
    """reasons.py as data: logged text -> reason, reason -> hint, shared and per era, and each kind's era."""

    reasons: dict[str, str]
    hints: dict[str, str]
    era_reasons: dict[str, dict[str, str]]  # era -> text -> reason, read before ``reasons``
    era_hints: dict[str, dict[str, str]]  # era -> reason -> hint, read before ``hints``
    kind_era: dict[str, str]  # message_kind -> era, for the kinds that have one
    kinds: dict[str, str]  # client phrase -> message_kind
    udp_phrase: str
    udp_kind: str
    other: str

    def tables(self) -> dict:
        """The taxonomy as the JSON tables the generated Ruby and Painless code read."""
        return {
            "reasons": self.reasons,
            "hints": self.hints,
            "era_reasons": self.era_reasons,
            "era_hints": self.era_hints,
            "kind_era": self.kind_era,
            "kinds": self.kinds,
            "udp_phrase": self.udp_phrase,
            "udp_kind": self.udp_kind,
            "other": self.other,
            "dataset": DATASET,
            "ecs_version": ECS_VERSION,
        }


def grok_definitions(directory: Path | None = None) -> dict[str, str]:
    return read_definitions(directory or patterns_dir())


def top_level_names(definitions: dict[str, str]) -> list[str]:
    return [name for name in definitions if name.startswith(TOP_LEVEL_PREFIX)]


def onigmo_patterns(directory: Path | None = None) -> list[OnigmoPattern]:
    """The NAMED_SENDERR_* patterns, in the order the parser tries them, as Onigmo regexes."""
    directory = directory or patterns_dir()
    return [to_onigmo(name, expand(directory, name)) for name in top_level_names(read_definitions(directory))]


def to_onigmo(name: str, expanded: str) -> OnigmoPattern:
    """pygrok's ``(^...$)`` expansion as ``\\A...\\Z``: Onigmo's ``^`` would also match after a newline."""
    regex = without_plain_groups(expanded)
    if not (regex.startswith("(?:^") and regex.endswith("$)")):
        raise PatternError(f"pattern {name} must be anchored: its definition should start with ^ and end with $")
    body = regex[4:-2]
    leftover = _UNTRANSLATABLE.search(body)
    if leftover:
        raise PatternError(
            f"pattern {name} uses {leftover.group()!r}, which Onigmo reads differently; "
            "rewrite it with portable syntax (see the header of patterns/named-send-errors)"
        )
    regex = r"\A" + to_onigmo_definition(body) + r"\Z"
    return OnigmoPattern(name, regex, tuple(re.findall(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", regex)))


def to_onigmo_definition(regex: str) -> str:
    """One Grok definition with Python-only spellings translated, for Logstash and Elasticsearch grok."""
    for python, onigmo in _TRANSLATIONS:
        regex = regex.replace(python, onigmo)
    return regex


def taxonomy() -> Taxonomy:
    # The very tables classify() and hint() read: that keeps the exports in step.
    kinds = [*reasons.KIND_BY_PHRASE.values(), reasons.UDP_SEND_FAILED]
    return Taxonomy(
        reasons=dict(reasons.REASON_BY_TEXT),
        hints=dict(reasons.HINTS),
        era_reasons={era: dict(table) for era, table in reasons.ERA_REASON_BY_TEXT.items()},
        era_hints={era: dict(table) for era, table in reasons.ERA_HINTS.items()},
        kind_era={kind: era for kind in kinds if (era := reasons.era(kind)) is not None},
        kinds=dict(reasons.KIND_BY_PHRASE),
        udp_phrase=reasons.UDP_PHRASE,
        udp_kind=reasons.UDP_SEND_FAILED,
        other=reasons.OTHER,
    )


def month_numbers() -> dict[str, int]:
    """Lower-case month names, English and journalctl's localized ones, as timestamp.py reads them."""
    return dict(timestamp.MONTHS)

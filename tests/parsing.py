"""Builders shared by the parser tests: a parser pinned to a zone and a clock."""

from __future__ import annotations

from datetime import UTC, datetime

from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import NamedLineParser

# A fixed "now" so that RFC 3164's year inference is reproducible.
NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def make_parser(zone: str = "UTC", now: datetime = NOW) -> NamedLineParser:
    return NamedLineParser(TimestampNormalizer(resolve_zone(zone), now))


def make_normalizer(zone: str = "UTC", now: datetime = NOW) -> TimestampNormalizer:
    return TimestampNormalizer(resolve_zone(zone), now)

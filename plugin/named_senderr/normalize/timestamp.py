"""Turn every wrapper's time text into an RFC 3339 UTC timestamp.

Zone-less times (named's print-time, RFC 3164) are read in a configured zone,
by default the machine's local zone, as syslog itself does. RFC 3164 has no
year: the year is the one that does not put the line in the future. A storm
logs thousands of lines in the same second, so conversions are cached by the
text up to the seconds and only the fraction is appended per line.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from named_senderr.errors import ConfigError

# English plus the abbreviations journalctl prints under common LC_TIME locales
# (de, fr, es, it, nl, pt); none of them maps one text to two months.
MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "jan janv ene gen",
        "feb févr fév fev",
        "mar mär mrz mars",
        "apr avr abr",
        "may mai mag mei",
        "jun juin giu",
        "jul juil lug",
        "aug août ago",
        "sep sept set",
        "oct okt ott out",
        "nov",
        "dec dez déc dic",
    ),
    start=1,
):
    for _name in _names.split():
        MONTHS[_name] = _number

_NAMED = re.compile(r"(\d{2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?")
_BSD = re.compile(
    r"(?:[^\W\d_]{3} )?([^\W\d_]{3,5})\.? {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?: (\d{4}))?"
)
_EPOCH_MICROS = re.compile(r"\d{10,17}")
_FUTURE_TOLERANCE = timedelta(days=1)


def resolve_zone(name: str | None) -> tzinfo:
    """The zone for zone-less times: an IANA name, ``UTC``, or None for local."""
    if name is None or name == "local":
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    if name.upper() in ("UTC", "Z"):
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only for a named zone: it costs every start-up

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"--timezone {name!r} is not a known zone; use an IANA name such as 'Europe/Berlin', 'UTC', or 'local'"
        ) from exc


class TimestampNormalizer:
    """Converts logged time texts to RFC 3339 UTC; returns None when impossible."""

    def __init__(self, zone: tzinfo, now: datetime | None = None) -> None:
        self.zone = zone
        self.now = now or datetime.now(UTC)
        self._cache: dict[str, str | None] = {}
        # named's print-time up to the minute -> that minute in UTC (None: convert each second alone); the
        # compiled loop (parse/_named_fast.c) builds a second it has not seen from it, without calling in here
        self._minutes: dict[str, str | None] = {}
        self._last_text: str | None = None
        self._last_result: str | None = None

    def to_rfc3339(self, text: str) -> str | None:
        """``text`` as ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``, or None if it is not a time."""
        if text == self._last_text:  # a storm logs many lines in the same millisecond
            return self._last_result
        head, dot, fraction = _split_fraction(text)
        try:
            base = self._cache[head]
        except KeyError:
            base = self._convert(head)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[head] = base
        result = None if base is None else f"{base}.{fraction}Z" if dot else base + "Z"
        self._last_text, self._last_result = text, result
        return result

    def _convert(self, head: str) -> str | None:
        if m := _NAMED.fullmatch(head):
            day, month_name, year, hour, minute, second, fraction = m.groups()
            month = MONTHS.get(month_name.lower())
            if month is None:
                return None
            if fraction is None:  # head ends in ":SS"
                if len(self._minutes) > 4096:
                    self._minutes.clear()
                self._minutes[head[:-3]] = _utc_minute(int(year), month, int(day), int(hour), int(minute), self.zone)
            return self._local(int(year), month, int(day), hour, minute, second)
        if m := _ISO.fullmatch(head):
            year, month_digits, day, hour, minute, second, _, offset = m.groups()
            try:
                zone = self.zone if offset is None else _fixed_offset(offset)
            except ValueError:
                return None  # +7200: an offset of a day or more is no zone
            return _utc(int(year), int(month_digits), int(day), hour, minute, second, zone)
        if m := _BSD.fullmatch(head):
            month_name, day, hour, minute, second, _, year = m.groups()
            month = MONTHS.get(month_name.lower())
            if month is None:
                return None
            if year:
                return self._local(int(year), month, int(day), hour, minute, second)
            return self._without_year(month, int(day), hour, minute, second)
        if _EPOCH_MICROS.fullmatch(head):  # journald __REALTIME_TIMESTAMP
            micros = int(head)
            moment = datetime.fromtimestamp(micros // 1_000_000, UTC)
            return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros % 1_000_000:06d}"
        return None  # monotonic clocks and anything else: no wall-clock time

    def _local(self, year: int, month: int, day: int, hour: str, minute: str, second: str) -> str | None:
        return _utc(year, month, day, hour, minute, second, self.zone)

    def _without_year(self, month: int, day: int, hour: str, minute: str, second: str) -> str | None:
        year = self.now.year
        for candidate in (year, year - 1):
            try:
                moment = datetime(candidate, month, day, int(hour), int(minute), int(second), tzinfo=self.zone)
            except ValueError:
                continue  # 29 Feb in a year without it
            if moment <= self.now + _FUTURE_TOLERANCE:
                return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return None


def _split_fraction(text: str) -> tuple[str, str, str]:
    """Split ``HH:MM:SS.fff`` inside ``text`` into the head and the fraction digits."""
    if text[-4:-3] == "." and text[-7:-6] == ":":  # named's print-time, the common case
        return text[:-4], ".", text[-3:]
    m = re.search(r"(:\d{2})[.,](\d+)", text)
    if not m:
        return text, "", ""
    return text[: m.start(2) - 1] + text[m.end(2) :], ".", m.group(2)


def _fixed_offset(offset: str) -> tzinfo:
    if offset == "Z":
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _utc(year: int, month: int, day: int, hour: str, minute: str, second: str, zone: tzinfo) -> str | None:
    seconds = int(second)
    if seconds < 60 and (head := _utc_minute(year, month, day, int(hour), int(minute), zone)) is not None:
        return f"{head}:{seconds:02d}"
    return _utc_second(year, month, day, int(hour), int(minute), seconds, zone)


def _utc_second(year: int, month: int, day: int, hour: int, minute: int, second: int, zone: tzinfo) -> str | None:
    """One local second in UTC, or None when it is no time: the reference of the minute's shortcut."""
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None  # 99-Bad-9999 99:99:99: keep the event, flag the time
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@lru_cache(maxsize=4096)
def _utc_minute(year: int, month: int, day: int, hour: int, minute: int, zone: tzinfo) -> str | None:
    """``YYYY-MM-DDTHH:MM`` in UTC of a local minute whose 60 seconds all share it, else None.

    A log with a few send errors a second misses the per-second cache on most lines; a conversion costs
    microseconds, a minute's is made once. None when the minute is no time, holds a change of offset, or
    the offset has seconds (local mean time before 1900): each second is converted alone then.
    """
    try:
        first = datetime(year, month, day, hour, minute, 0, tzinfo=zone).astimezone(UTC)
        last = datetime(year, month, day, hour, minute, 59, tzinfo=zone).astimezone(UTC)
    except ValueError:
        return None
    if first.second != 0 or last - first != timedelta(seconds=59):
        return None
    return first.strftime("%Y-%m-%dT%H:%M")


def to_epoch_ns(timestamp: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time such as ``2026-11-21T04:48:37.067Z``."""
    text = timestamp.removesuffix("Z")
    head, _, fraction = text.partition(".")
    if len(head) == 19 and (fraction.isdigit() or not fraction):
        return _epoch_seconds(head) * 1_000_000_000 + int((fraction + "000000000")[:9])
    moment = datetime.fromisoformat(timestamp)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


@lru_cache(maxsize=4096)
def _epoch_seconds(head: str) -> int:
    """Cached per second: a busy log has thousands of lines in each."""
    return int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())

"""The entry times a VictoriaLogs drops without a word, read from its ``/flags``, so they are dead-lettered instead.

At ingestion it skips, with 200 and only a warning in its own log, an entry whose day is before
now - ``-retentionPeriod`` (7 days by default), after now + ``-futureRetention`` (2 days, at least
one), or whose time is before now - ``-maxBackfillAge`` when that is set
(lib/logstorage/storage.go:1161-1198@v1.52.1; defaults app/vlstorage/main.go:28-41, the one-day
floor storage.go:633). ``/flags`` lists only the flags given on its command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAY_NS = 86_400 * 1_000_000_000
DEFAULTS = {"retentionPeriod": "7d", "futureRetention": "2d", "maxBackfillAge": "0"}
_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "y": 365 * 86_400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_FLAG = re.compile(r'^-(\w+)="(.*)"$')
_MONTH_S = 31 * 86_400  # a bare number, or one with M, counts months of 31 days (lib/flagutil/duration.go:80-112)


def duration_ns(value: str) -> int | None:
    """A VictoriaMetrics retention duration (``7d``, ``100y``, ``1y2d``, ``3M``, ``3``) in ns; None if unreadable."""
    months = value.removesuffix("M")
    if re.fullmatch(r"\d+(\.\d+)?", months):
        return int(float(months) * _MONTH_S * 1e9)
    text = value.lower()
    if not text or _PART.sub("", text):
        return None
    return int(sum(float(n) * _UNITS_S[unit] for n, unit in _PART.findall(text)) * 1e9)


@dataclass(frozen=True)
class TimeLimits:
    """The three bounds, and the flag values for the messages."""

    retention: str
    future: str
    backfill: str
    retention_ns: int
    future_ns: int
    backfill_ns: int

    def refusal(self, ns: int, now_ns: int) -> str | None:
        """Why the server would drop an entry at ``ns`` now, with the fix; None when it keeps it."""
        day = ns // DAY_NS
        if day < (now_ns - self.retention_ns) // DAY_NS:
            return (
                f"older than this VictoriaLogs keeps (-retentionPeriod={self.retention}): it would skip the entry "
                "with only a warning in its own log; start it with a -retentionPeriod that covers the entry's time"
            )
        if day > (now_ns + self.future_ns) // DAY_NS:
            return (
                f"further ahead than this VictoriaLogs takes (-futureRetention={self.future}): it would skip the "
                "entry; check the clock and --timezone of the host that logged it"
            )
        if self.backfill_ns and ns < now_ns - self.backfill_ns:
            return (
                f"older than this VictoriaLogs takes (-maxBackfillAge={self.backfill}): it would skip the entry; "
                "raise -maxBackfillAge to ship old logs"
            )
        return None


def parse_flags(text: str) -> TimeLimits | None:
    """The limits from a ``/flags`` answer (``-name="value"`` lines); None when one cannot be read."""
    flags = dict(DEFAULTS)
    for line in text.splitlines():
        match = _FLAG.match(line.strip())
        if match and match[1] in flags:
            flags[match[1]] = match[2]
    retention, future, backfill = (duration_ns(flags[name]) for name in DEFAULTS)
    if retention is None or future is None or backfill is None:
        return None
    return TimeLimits(
        flags["retentionPeriod"], flags["futureRetention"], flags["maxBackfillAge"],
        retention, max(future, DAY_NS), backfill,
    )  # fmt: skip

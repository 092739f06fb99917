"""The Summary for humans: a terminal table, a PNG chart, a self-contained HTML page.

matplotlib is imported inside ``plot`` only (the ``report`` extra): the other
commands, and a report without ``--plot``/``--html``, never pay for it.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from math import ceil

from named_senderr.errors import ConfigError
from named_senderr.report.summary import Summary

TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 20160, 43200)  # minutes
MAX_TICKS = 8
BY_FIELDS = {"host": "hosts", "reason": "reasons", "client-net": "client_networks", "qname": "qnames", "view": "views"}


def terminal(summary: Summary, by: str | None = None) -> str:
    """Per server: events, rate, reason mix, peak minute; then the fleet's top networks and qnames."""
    lines = [f"send errors {summary.start} .. {summary.end} from {summary.source}: {summary.events:,} events"]
    lines.append(f"  window: {summary.basis}")
    if summary.udp_drop_seconds:
        lines.append(f"  {udp_signal(summary.udp_drop_seconds)}")
    if by in (None, "host"):
        for h in summary.hosts:
            mix = ", ".join(f"{reason} {n:,}" for reason, n in h.reasons.items())
            rate = f"{h.per_minute:>8.2f}/min over {h.active_minutes:,} min"
            udp = f"  UDP drops in {h.udp_drop_seconds:,} s" if h.udp_drop_seconds else ""
            lines.append(f"  {h.host:<16} {h.events:>7,} events  {rate}  peak {h.peak_minute} ({h.peak_events:,}){udp}")
            lines.append(f"  {'':<16} {mix}")
    tables = {
        "reason": ("reasons", list(summary.reasons.items())),
        "client-net": ("top client networks (/24, /56)", summary.client_networks),
        "qname": ("top qnames", summary.qnames),
        "view": ("views", summary.views),
    }
    shown = [by] if by not in (None, "host") else (["reason", "client-net", "qname"] if by is None else [])
    for key in shown:
        title, rows = tables[key]
        lines.append(f"{title}:")
        lines += [f"  {name:<32} {n:>7,}" for name, n in rows]
    for name in summary.bounded:
        lines.append(f"note: {name} reached the store's bucket bound; its top entries may be undercounted")
    outside = summary.outside
    if outside.options:
        sides = [f"{outside.before:,} before it (from {outside.first})"] if outside.before else []
        sides += [f"{outside.after:,} after it (up to {outside.last})"] if outside.after else []
        lines.append(
            f"note: {outside.before + outside.after:,} events lie outside the window, {' and '.join(sides)}; "
            f"{outside.options} shows them"
        )
    return "\n".join(lines)


def udp_signal(seconds: int) -> str:
    """The UDP line's count, said so that nobody adds it to the events (report/summary.py says why)."""
    unit = "second" if seconds == 1 else "seconds"
    return (
        f"UDP drop signal: {seconds:,} {unit} with drops ('Sending UDP messages failed', logged at most "
        "once a second; the same drops as the events, not added to them)"
    )


def plot(summary: Summary, path: str) -> None:
    """Events per minute by reason (stacked) above events per server."""
    png = png_bytes(summary)
    try:
        with open(path, "wb") as out:
            out.write(png)
    except OSError as exc:
        raise ConfigError(f"--plot {path}: cannot write ({exc.strerror}); choose another path") from None


def png_bytes(summary: Summary) -> bytes:
    figure = chart(summary)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def chart(summary: Summary):
    """The matplotlib Figure of ``plot`` (the caller closes it): open for checking its axes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'named-senderr[report]'") from None

    minutes = sorted(summary.minutes)
    times = [datetime.strptime(m, "%Y-%m-%dT%H:%MZ") for m in minutes]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [2, 1]})
    base = [0] * len(minutes)
    for reason in summary.reasons:
        values = [summary.minutes[m].get(reason, 0) for m in minutes]
        top.bar(times, values, width=1 / 1440, bottom=base, label=reason, align="edge")
        base = [b + v for b, v in zip(base, values, strict=True)]
    top.set_title(f"send errors per minute by reason ({summary.start} .. {summary.end}, UTC)")
    top.set_ylabel("events / minute")
    top.legend(loc="upper right")
    if times:
        ticks, labels = minute_ticks(times[0], times[-1] + timedelta(minutes=1))
        top.set_xlim(times[0], times[-1] + timedelta(minutes=1))
        top.set_xticks(ticks, labels)
    top.set_xlabel("minute (UTC)")
    hosts = [h.host for h in summary.hosts]
    bottom.barh(hosts[::-1], [h.events for h in summary.hosts][::-1])
    bottom.set_xlabel("events per server")
    figure.tight_layout()
    return figure


def minute_ticks(start: datetime, end: datetime) -> tuple[list[datetime], list[str]]:
    """At most MAX_TICKS whole-minute ticks from ``start`` to ``end``, each label once (with the date past a day)."""
    span = max(1, int((end - start).total_seconds() // 60))
    step = next((s for s in TICK_STEPS if span / s <= MAX_TICKS), TICK_STEPS[-1])
    epoch = datetime(1970, 1, 1)
    first = ceil((start - epoch).total_seconds() / 60 / step) * step  # ticks fall on multiples of step
    ticks = [epoch + timedelta(minutes=m) for m in range(first, first + (MAX_TICKS + 1) * step, step)]
    ticks = [t for t in ticks if t <= end]
    dated = end - start >= timedelta(days=1)  # one clock time could come twice
    return ticks, [t.strftime("%m-%d %H:%M" if dated else "%H:%M") for t in ticks]

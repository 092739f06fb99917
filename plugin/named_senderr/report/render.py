"""The Summary for humans: a terminal table and a PNG chart (the HTML page is report/html.py).

matplotlib is imported inside ``plot`` only (the ``report`` extra): the other
commands, and a report without ``--plot``, never pay for it.
"""

from __future__ import annotations

import io

from named_senderr.errors import ConfigError
from named_senderr.report.summary import Summary

BY_FIELDS = {"host": "hosts", "reason": "reasons", "client-net": "client_networks", "qname": "qnames", "view": "views"}


def terminal(summary: Summary, by: str | None = None) -> str:
    """Per server: events, rate, reason mix, peak minute; then the fleet's top networks and qnames."""
    lines = [f"send errors {summary.start} .. {summary.end} from {summary.source}: {summary.events:,} events"]
    if by in (None, "host"):
        for h in summary.hosts:
            mix = ", ".join(f"{reason} {n:,}" for reason, n in h.reasons.items())
            lines.append(
                f"  {h.host:<16} {h.events:>7,} events  {h.per_minute:>8.2f}/min  peak {h.peak_minute} ({h.peak_events:,})"
            )
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
    return "\n".join(lines)


def plot(summary: Summary, path: str) -> None:
    """Events per minute by reason (stacked) above events per server."""
    png = png_bytes(summary)
    try:
        with open(path, "wb") as out:
            out.write(png)
    except OSError as exc:
        raise ConfigError(f"--plot {path}: cannot write ({exc.strerror}); choose another path") from None


def png_bytes(summary: Summary) -> bytes:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'named-senderr[report]'") from None
    from datetime import datetime

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
    top.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    top.set_xlabel("minute (UTC)")
    hosts = [h.host for h in summary.hosts]
    bottom.barh(hosts[::-1], [h.events for h in summary.hosts][::-1])
    bottom.set_xlabel("events per server")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()

"""``report --html``: one self-contained page an operator reads at a glance and can print.

No script, no font, no image from the network: CSS and SVG are inline, so the page
opens the same from a mail attachment, a ticket or an air-gapped host. Every value
that came from a log (server, qname, network, reason, file name) passes through
``html.escape`` before it reaches the page: a hostile qname stays text.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.reasons import HINTS, OTHER
from named_senderr.report import svg
from named_senderr.report.summary import HostCounters, HostSummary, Summary

COLORS = {
    "would_block": "#e8590c",
    "connection_reset": "#1c7ed6",
    "host_unreachable": "#7048e8",
    "permission_denied": "#c2255c",
    "no_resources": "#f08c00",
    "unclassified": "#868e96",
    "network_unreachable": "#0c8599",
    "connection_refused": "#2f9e44",
}
SPARE = ("#5c940d", "#862e9c", "#a61e4d", "#364fc7", "#087f5b", "#d9480f", "#495057")
# hostcheck's cases (hostcheck/diagnose.py), in a few words each
CASES = {
    "a": "socket buffer full: raise net.core.wmem_default / wmem_max",
    "b": "netmgr queue (BIND 9.16+), not the kernel: raising wmem does not help",
    "c": "egress drops after the send (qdisc, ENOBUFS): check tc -s qdisc, the NIC",
    "quiet": "nothing moved",
    "mixed": "more than one cause: sample over a longer interval",
}
KERNEL = ("UdpSndbufErrors", "Udp6SndbufErrors")
NAMED = ("UDP4SendErr", "UDP6SendErr")
CSS = (Path(__file__).resolve().parent / "page.css").read_text(encoding="utf-8")
# The UDP line counts seconds, not answers, and the same drops are among the events (report/summary.py).
UDP_NOTE = "seconds with 'Sending UDP messages failed': the same drops as the events, not added"


def write_page(summary: Summary, path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(page(summary))
    except OSError as exc:
        raise ConfigError(f"--html {path}: cannot write ({exc.strerror}); choose another path") from None


def page(summary: Summary) -> str:
    colors = palette(summary.reasons)
    grid = svg.grid(list(summary.minutes))
    body = [header(summary, grid)]
    if grid is None:
        body.append(f'<section><p class="empty">No send errors in this window.{udp_only(summary)}</p></section>')
    else:
        body += [fleet_chart(summary, grid, colors), servers(summary, grid, colors)]
        if summary.counters:
            body.append(counters(summary))
        body += [reasons(summary, colors), tops(summary)]
    body.append(footer(summary))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>BIND send errors · {escape(summary.start)} – {escape(summary.end)}</title>"
        f"<style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>\n"
    )


def palette(reasons: dict[str, int]) -> dict[str, str]:
    """A fixed colour for the usual reasons, so pages compare side by side; spare colours for the rest."""
    spare = iter(SPARE * (len(reasons) // len(SPARE) + 1))
    return {reason: COLORS.get(reason) or next(spare) for reason in reasons}


def header(summary: Summary, grid: svg.Grid | None) -> str:
    start, end = (datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ") for t in (summary.start, summary.end))
    peak = max(summary.minutes.items(), key=lambda kv: (sum(kv[1].values()), kv[0]), default=None)
    top_reason = next(iter(summary.reasons.items()), None)
    cards = [
        card("events", f"{summary.events:,}", f"over {duration(end - start)}"),
    ]
    if summary.udp_drop_seconds:
        cards.append(card("UDP drop signal", f"{summary.udp_drop_seconds:,} s", UDP_NOTE))
    cards.append(card("servers", f"{len(summary.hosts):,}", ", ".join(h.host for h in summary.hosts[:4])))
    if peak is not None:
        cards.append(
            card("fleet peak minute", f"{sum(peak[1].values()):,}", f"at {clock(peak[0], dated(summary))} UTC")
        )
    if top_reason is not None:
        share = percent(top_reason[1], summary.events)
        cards.append(card("top reason", top_reason[0], f"{share} of events"))
    inputs = summary.sources
    sources = "".join(f"<li><code>{escape(name)}</code></li>" for name in inputs)
    return (
        '<header><div class="title"><h1>BIND send errors</h1>'
        f'<p class="window">Window <time>{escape(stamp(start))}</time> → <time>{escape(stamp(end))}</time> UTC'
        f" · {escape(duration(end - start))}</p></div>"
        f'<details class="sources" open><summary>{len(inputs)} source{"s" if len(inputs) != 1 else ""}</summary>'
        f'<ul>{sources}</ul></details></header><section class="cards">{"".join(cards)}</section>'
    )


def card(label: str, value: str, note: str) -> str:
    return (
        f'<div class="card"><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        f'<div class="note">{escape(note)}</div></div>'
    )


def fleet_chart(summary: Summary, grid: svg.Grid, colors: dict[str, str]) -> str:
    unit = "per minute" if grid.step == 1 else f"per {grid.step} minutes"
    legend = "".join(
        f'<li><span class="swatch" style="background:{colors[r]}"></span>{escape(r)} <b>{n:,}</b></li>'
        for r, n in summary.reasons.items()
    )
    chart = svg.stacked(grid, summary.minutes, list(summary.reasons), colors, unit)
    return f'<section><h2>Fleet: events {escape(unit)} (UTC)</h2><ul class="legend">{legend}</ul>{chart}</section>'


def udp_only(summary: Summary) -> str:
    """What an empty page still says when named logged UDP drops without per-client lines (no debug 3)."""
    if not summary.udp_drop_seconds:
        return ""
    return (
        f" named logged UDP drops in {summary.udp_drop_seconds:,} s ('Sending UDP messages failed') without "
        "per-client lines: those are logged at debug 3 in category security."
    )


def servers(summary: Summary, grid: svg.Grid, colors: dict[str, str]) -> str:
    udp = bool(summary.udp_drop_seconds)
    rows = "".join(
        server_row(h, summary.host_minutes.get(h.host, {}), grid, colors, dated(summary), udp) for h in summary.hosts
    )
    column = "<th class=num>UDP drop<br>seconds</th>" if udp else ""
    note = (
        " UDP drop seconds: seconds with a 'Sending UDP messages failed' line, beside the events and not in them "
        "(named logs it at most once a second, and each dropped answer as a send failed event too)."
        if udp
        else ""
    )
    return (
        '<section><h2>Servers</h2><table class="servers"><thead><tr><th>Server</th><th class=num>Events</th>'
        f"{column}<th class=num>Rate</th><th>Active span (UTC)</th><th>Peak minute</th>"
        f"<th>Per {'minute' if grid.step == 1 else f'{grid.step} minutes'}</th><th>Reason mix</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
        '<p class="caption">Rate is over each server\'s active span, from its first to its last minute '
        f"with an event. Bars share the fleet's time axis; the tallest bar of each server is highlighted.{note}</p>"
        "</section>"
    )


def server_row(
    host: HostSummary, minutes: dict[str, int], grid: svg.Grid, colors: dict[str, str], day: bool, udp: bool
) -> str:
    first, last = (min(minutes), max(minutes)) if minutes else (None, None)
    span = active_minutes(first, last)
    rate = f"{host.events / span:,.1f}/min" if span else "–"
    active = f"{clock(first, day)}–{clock(last, day)} ({span:,} min)" if first and last else "–"
    peak = f"{escape(clock(host.peak_minute, day))} <b>{host.peak_events:,}</b>" if host.peak_minute else "–"
    caption = f"{host.host}: events per bin, peak {host.peak_events:,} at {clock(host.peak_minute or '', day)}"
    mix = " · ".join(
        f'<span class="mixitem"><span class="swatch" style="background:{colors[r]}"></span>{escape(r)} {n:,}</span>'
        for r, n in host.reasons.items()
    )
    udp_cell = f'<td class="num udp">{host.udp_drop_seconds:,}</td>' if udp else ""
    return (
        f'<tr id="host-{escape(host.host)}"><th scope="row">{escape(host.host)}</th>'
        f'<td class="num events">{host.events:,}</td>{udp_cell}<td class="num">{escape(rate)}</td>'
        f'<td class="span">{escape(active)}</td><td class="span">{peak}</td>'
        f"<td>{svg.sparkline(grid, minutes, caption)}</td>"
        f'<td class="mixcell">{svg.mix_bar(host.reasons, colors)}<div class="mixtext">{mix}</div></td></tr>'
    )


def counters(summary: Summary) -> str:
    rows = "".join(counter_row(c, summary.host_minutes.get(c.host, {}), dated(summary)) for c in summary.counters)
    return (
        "<section><h2>Kernel and named counters beside the log</h2>"
        '<table class="counters"><thead><tr><th>Server</th><th>Sampled (UTC)</th><th class=num>Samples</th>'
        "<th class=num>Send-error<br>lines</th><th class=num>Refused sends<br>logged</th>"
        "<th class=num>Kernel<br>SndbufErrors Δ</th><th class=num>named UDP<br>SendErr Δ</th><th>hostcheck says</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
        '<p class="caption">From <code>hostcheck --emit</code> records among the inputs. Send-error lines: this '
        "report's lines in the minutes the samples cover; refused sends: the would-block and netmgr lines "
        "hostcheck counted in its <code>--log</code>, the base of the percentages. SndbufErrors rising one for "
        "one with them means the socket buffer; SndbufErrors flat while named's SendErr rises means netmgr's "
        "queue, not the kernel.</p></section>"
    )


def counter_row(series: HostCounters, minutes: dict[str, int], day: bool) -> str:
    start, end = series.start[:16] + "Z", series.end[:16] + "Z"
    logged = sum(n for minute, n in minutes.items() if start <= minute < end)
    refused = series.log.get("would_block", 0) + series.log.get("netmgr", 0)
    base = refused or logged
    kernel = sum(series.deltas.get(name, 0) for name in KERNEL)
    named = sum(series.deltas.get(name, 0) for name in NAMED)
    case = max(series.cases.items(), key=lambda kv: (kv[1], kv[0]))[0] if series.cases else "?"
    return (
        f'<tr id="counters-{escape(series.host)}"><th scope="row">{escape(series.host)}</th>'
        f'<td class="span">{escape(clock(start, day))} – {escape(clock(end, day))}</td><td class=num>{series.samples:,}</td>'
        f'<td class="num">{logged:,}</td><td class="num">{refused:,}</td>'
        f'<td class="num kernel">{kernel:,} <small>{percent(kernel, base)}</small></td>'
        f'<td class="num">{named:,} <small>{percent(named, base)}</small></td>'
        f'<td class="verdict"><span class="case">({escape(case)})</span> {escape(CASES.get(case, case))}</td></tr>'
    )


def reasons(summary: Summary, colors: dict[str, str]) -> str:
    rows = "".join(
        f'<tr id="reason-{escape(r)}"><th scope="row"><span class="swatch" style="background:{colors[r]}"></span>'
        f'<code>{escape(r)}</code></th><td class="num events">{n:,}</td>'
        f'<td class="num">{percent(n, summary.events)}</td><td class="hint">{escape(HINTS.get(r, HINTS[OTHER]))}</td></tr>'
        for r, n in summary.reasons.items()
    )
    return (
        '<section><h2>Reasons, and what to look at</h2><table class="reasons"><thead><tr><th>Reason</th>'
        f"<th class=num>Events</th><th class=num>Share</th><th>Look at</th></tr></thead><tbody>{rows}</tbody>"
        "</table></section>"
    )


def tops(summary: Summary) -> str:
    tables = [
        top_table("Top client networks", "/24 for IPv4, /56 for IPv6", summary.client_networks, summary.events),
        top_table("Top qnames", "query names", summary.qnames, summary.events),
    ]
    if summary.views:
        tables.append(top_table("Views", "named views", summary.views, summary.events))
    return f'<section class="tops">{"".join(tables)}</section>'


def top_table(title: str, note: str, rows: list[tuple[str, int]], total: int) -> str:
    most = max((n for _, n in rows), default=1)
    body = "".join(
        f'<tr><td class="key"><code>{escape(key)}</code></td><td class="num">{n:,}</td>'
        f'<td class="share"><span class="meter" style="width:{100 * n / most:.1f}%"></span>'
        f"<small>{percent(n, total)}</small></td></tr>"
        for key, n in rows
    )
    return (
        f'<div class="top"><h2>{escape(title)} <small>{escape(note)}</small></h2><table><thead><tr>'
        f"<th>{escape(title.split()[-1].rstrip('s').capitalize())}</th><th class=num>Events</th><th>Share</th>"
        f"</tr></thead><tbody>{body}</tbody></table></div>"
    )


def footer(summary: Summary) -> str:
    notes = "".join(
        f'<p class="warn">{escape(name)} reached the store\'s bucket bound: its top entries may be undercounted.</p>'
        for name in summary.bounded
    )
    return (
        f"<footer>{notes}<p>named-senderr report · from {escape(summary.source)} · "
        "times in UTC · a self-contained page: no script, no external asset</p></footer>"
    )


def active_minutes(first: str | None, last: str | None) -> int:
    """Minutes from the first to the last minute with an event, both counted."""
    if first is None or last is None:
        return 0
    start, end = (datetime.strptime(m, svg.MINUTE) for m in (first, last))
    return int((end - start).total_seconds() // 60) + 1


def dated(summary: Summary) -> bool:
    """Whether the events span more than one day, so that a time alone would be ambiguous."""
    return len({minute[:10] for minute in summary.minutes}) > 1


def clock(minute: str, day: bool) -> str:
    """``2026-11-20T10:17Z`` as ``10:17`` (the window states the day), or ``20 Nov 10:17`` across days."""
    if len(minute) < 16:
        return minute
    return datetime.strptime(minute[:16], "%Y-%m-%dT%H:%M").strftime("%d %b %H:%M" if day else "%H:%M")


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def duration(delta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min" if mins else ""]
    return " ".join(p for p in parts if p) or "under a minute"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"

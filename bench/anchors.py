"""Every speed figure of issue 14 beside its anchor, measured in one run on this machine.

Generates the two inputs once into --cache-dir (1,000,000 lines with 1 % send
errors; 200,000 lines that are all send errors), then runs whole processes,
interleaved, best of --runs (CPU = user + sys from wait4): ``parse`` beside
``grep -cF`` (always) and Fluent Bit tail + one regex parser -> file (when
$FLUENT_BIT or PATH names a binary; without one, the naive pygrok loop); ``ship``
into a real Elasticsearch started from the test harness' cache (beside Fluent
Bit tail -> es when present); ``serve`` and ``fluentd-filter`` against their
events-per-CPU-second target. Prints min (median) and whether each target is met.

    python bench/anchors.py                 # the full run, 5 of each
    python bench/anchors.py --quick         # 2 of each
    FLUENT_BIT=/path/to/fluent-bit python bench/anchors.py --skip ship
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import filter_bench
import parse_bench
import serve_bench
import timing

SERVE_TARGET = 150_000  # events per CPU-second, serve and fluentd-filter
SHIP_CPU_TARGET_US = 10.0
SECTIONS = ("parse", "ship", "serve", "filter")
# One regex parser for the generated lines (Onigmo syntax), the anchor's whole parsing work.
FLUENT_BIT_REGEX = (
    r"^(?<time>\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2}\.\d{3}) (?<category>[\w-]+): (?<severity>[\w ]+?): "
    r"(?:client @0x[0-9a-f]+ (?<client_ip>[0-9a-fA-F:.]+)#(?<client_port>\d+) \((?<qname>[^)]*)\): "
    r"view (?<view>[^:]+): )?(?<message>.*)$"
)


@dataclass(frozen=True)
class Row:
    work: str
    ours: str
    anchor: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: str = "—"


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def seconds(best: timing.Best, what: str) -> str:
    if what == "wall":
        return f"{best.wall:.2f} s wall (med {best.wall_median:.2f})"
    return f"{best.cpu:.2f} s CPU (med {best.cpu_median:.2f})"


def fluent_bit_binary() -> str | None:
    path = os.environ.get("FLUENT_BIT") or shutil.which("fluent-bit")
    return path if path and os.access(path, os.X_OK) else None


def fluent_bit_config(directory: Path, log: Path, output: str, parser: bool, grace: int = 1) -> Path:
    """A classic-format pipeline: tail ``log`` from its head to its end (optionally one regex parser), ``output``."""
    parsers = directory / "parsers.conf"
    parsers.write_text(
        f"[PARSER]\n    name        named_send\n    format      regex\n    regex       {FLUENT_BIT_REGEX}\n"
        "    time_key    time\n    time_format %d-%b-%Y %H:%M:%S.%L\n"
    )
    config = directory / f"fluent-bit-{'parser' if parser else 'raw'}.conf"
    config.write_text(
        f"[SERVICE]\n    flush        1\n    grace        {grace}\n    log_level    error\n    parsers_file {parsers}\n"
        f"[INPUT]\n    name              tail\n    path              {log}\n    read_from_head    true\n"
        f"    exit_on_eof       true\n{'    parser            named_send' if parser else ''}\n"
        f"[OUTPUT]\n    name   {output}\n    match  *\n"
    )
    return config


def in_file(
    argv: list[str], env: dict[str, str] | None = None, counts: dict[str, int] | None = None, name: str = ""
) -> Callable[[], timing.Run]:
    """A command whose stdout goes to a file; the first run's line count is kept in ``counts[name]``."""

    def command() -> timing.Run:
        with tempfile.TemporaryFile() as out:
            done = timing.run(argv, stdout=out, env=env, ok=(0, 1))
            if counts is not None and name not in counts:
                counts[name] = timing.count_lines(out)
        return done

    return command


def fluent_bit_to_file(binary: str, log: Path, workdir: Path, counts: dict[str, int]) -> Callable[[], timing.Run]:
    out = workdir / "fluent-bit-out"
    out.mkdir(exist_ok=True)
    config = fluent_bit_config(workdir, log, f"file\n    path   {out}\n    file   out.jsonl", parser=True)

    def command() -> timing.Run:
        (out / "out.jsonl").unlink(missing_ok=True)
        done = timing.run([binary, "-c", str(config)])
        with open(out / "out.jsonl", "rb") as records:
            counts.setdefault("fluent-bit", timing.count_lines(records))
        return done

    return command


def parse_rows(args: argparse.Namespace, errors: Path, mixed: Path, binary: str | None) -> list[Row]:
    from named_senderr.parse.grok import patterns_dir

    counts: dict[str, int] = {}
    grep_env = {**os.environ, "LC_ALL": "C"}
    parse = [*timing.NAMED_SENDERR, "parse"]
    commands = {
        "parse errors": in_file([*parse, str(errors)], counts=counts, name="errors"),
        "parse mixed": in_file([*parse, str(mixed)], counts=counts, name="mixed"),
        "grep": in_file(parse_bench.grep_command(mixed), env=grep_env),
    }
    if binary:
        commands["fluent-bit"] = fluent_bit_to_file(binary, errors, args.workdir, counts)
    else:
        commands["naive"] = in_file([sys.executable, "-c", parse_bench.NAIVE, str(errors), str(patterns_dir())])
    in_file([*parse, str(errors)])()  # fills the pattern cache, unmeasured
    best = timing.interleaved(commands, args.runs)
    ours = best["parse errors"]
    title = f"all send errors → ECS NDJSON ({args.errors_lines:,} lines, {counts['errors']:,} events)"
    ours_text = f"{seconds(ours, 'cpu')}, {counts['errors'] / ours.cpu:,.0f} events/CPU-s"
    rows = []
    if binary:
        anchor = best["fluent-bit"]
        ratio = ours.cpu / anchor.cpu
        rows.append(
            Row(
                title,
                ours_text,
                f"Fluent Bit tail + 1 regex parser → file: {seconds(anchor, 'cpu')}, {counts['fluent-bit']:,} records",
                f"{ratio:.2f}× CPU",
                "≤ 1.0× CPU",
                verdict(ratio <= 1.0),
            )
        )
    else:
        naive = best["naive"]
        rows.append(Row(title, ours_text, "no Fluent Bit: set FLUENT_BIT", target="≤ 1.0× Fluent Bit CPU"))
        rows.append(
            Row(
                "  same file, naive loop anchor",
                "",
                f"pygrok on every line + json.dumps: {seconds(naive, 'cpu')}",
                f"{ours.cpu / naive.cpu:.2f}× CPU",
            )
        )
    grep = best["grep"]
    ratio = best["parse mixed"].wall / grep.wall
    rows.append(
        Row(
            f"mixed {args.lines:,} lines → ECS NDJSON ({counts['mixed']:,} events)",
            f"{seconds(best['parse mixed'], 'wall')}, {seconds(best['parse mixed'], 'cpu')}",
            f"LC_ALL=C grep -cF, 3 phrases: {seconds(grep, 'wall')}, {seconds(grep, 'cpu')}",
            f"{ratio:.2f}× wall",
            "≤ 1.0× wall",
            verdict(ratio <= 1.0),
        )
    )
    return rows


def ship_rows(args: argparse.Namespace, errors: Path, binary: str | None) -> list[Row]:
    import httpx

    import ship_bench

    warmup = timing.generated_log(args.workdir, min(150_000, args.errors_lines), 1.0, seed=7)
    server = ship_bench.start("elasticsearch")
    try:
        ship_bench.warm_up("elasticsearch", server, warmup)
        shippers = ("ship", "fluent-bit", "fluent-bit-parsed")  # the last: Fluent Bit's regex parser's fields
        runs: dict[str, list[timing.Run]] = {name: [] for name in shippers}
        lost: dict[str, int] = dict.fromkeys(shippers, 0)
        stored_rates: dict[str, list[float]] = {name: [] for name in shippers}  # documents stored per second
        server_cpu: dict[str, list[float]] = {name: [] for name in shippers}  # the store's CPU per document stored
        port = server.url.rsplit(":", 1)[1]
        es_output = f"es\n    host   127.0.0.1\n    port   {port}\n    suppress_type_name on\n    index"
        for attempt in range(args.runs):
            for name in runs if binary else ("ship",):
                target = f"bench-{name}-{attempt}"
                if name == "ship":
                    done, cpu, count = ship_bench.ship_once(
                        "elasticsearch", server, ship_bench.ship_command(errors), target
                    )
                else:
                    parser = name == "fluent-bit-parsed"
                    config = fluent_bit_config(args.workdir, errors, f"{es_output} {target}", parser=parser)
                    before = timing.group_cpu(server.process.pid)
                    done = timing.run([str(binary), "-c", str(config)])
                    cpu = timing.group_cpu(server.process.pid) - before
                    count = ship_bench.stored("elasticsearch", server.url, target)
                runs[name].append(done)
                server_cpu[name].append(cpu / max(count, 1))
                lost[name] = max(lost[name], args.errors_lines - count)
                stored_rates[name].append(min(count, args.errors_lines) / done.wall)
                httpx.delete(f"{server.url}/{target}", timeout=60).raise_for_status()
        retrying = binary is not None and args.fluent_bit_retries
        retried = fluent_bit_until_stored(str(binary), args, errors, server.url, es_output) if retrying else []
    finally:
        server.stop()
    ours = timing.Best(tuple(runs["ship"]))
    events = args.errors_lines
    for run in retried:
        print(
            f"Fluent Bit tail → es with {run.setting}: {run.count:,} documents stored for {events:,} lines, "
            f"the last {run.seconds:.1f} s after its start"
        )
    title = f"ship {events:,} events → Elasticsearch (real, loopback)"
    cpu_us = ours.cpu / events * 1e6
    check = "" if lost["ship"] == 0 else f", {lost['ship']:,} NOT STORED"
    rows = [
        Row(
            title,
            f"{cpu_us:.1f} µs CPU/event (med {ours.cpu_median / events * 1e6:.1f}){check}",
            target=f"≤ {SHIP_CPU_TARGET_US:.0f} µs CPU/event",
            met=verdict(cpu_us <= SHIP_CPU_TARGET_US and not lost["ship"]),
        )
    ]
    rate = events / ours.wall
    rate_text = f"{rate:,.0f} events/s (med {events / ours.wall_median:,.0f})"
    ours_server = min(server_cpu["ship"]) * 1e6  # the store shares the cores: what each document costs it
    server_text = f"{ours_server:.0f} µs (ECS, about 25 fields)"
    if not binary:
        rows.append(Row("  events/s", rate_text, "no Fluent Bit: set FLUENT_BIT", target="≥ 1.0× Fluent Bit"))
        rows.append(Row("  Elasticsearch CPU/document stored", server_text))
        return rows
    anchor = timing.Best(tuple(runs["fluent-bit"]))
    anchor_text = f"Fluent Bit tail → es (raw lines): {events / anchor.wall:,.0f} events/s, {anchor.cpu:.2f} s CPU"
    if lost["fluent-bit"]:
        anchor_text += f", lost up to {lost['fluent-bit']:,}"
    ratio = rate / (events / anchor.wall)
    rows.append(Row("  events/s", rate_text, anchor_text, f"{ratio:.2f}× rate", "≥ 1.0× rate", verdict(ratio >= 1.0)))
    anchor_server = min(server_cpu["fluent-bit"]) * 1e6
    rows.append(
        Row(
            "  Elasticsearch CPU/document stored",
            server_text,
            f"Fluent Bit's raw lines (2 fields): {anchor_server:.0f} µs",
            f"{ours_server / anchor_server:.2f}× the store's CPU",
        )
    )
    # What reached the store: a run that gave up on documents after 429s reads fast and stores less.
    ours_stored, anchor_stored = max(stored_rates["ship"]), max(stored_rates["fluent-bit"])
    rows.append(
        Row(
            "  documents stored/s",
            f"{ours_stored:,.0f}/s",
            f"Fluent Bit: {anchor_stored:,.0f}/s (its best run, duplicates counted as stored)",
            f"{ours_stored / anchor_stored:.2f}× stored/s",
        )
    )
    # The same work as ours, nearer: Fluent Bit's regex parser's fields (about 8), not the raw line.
    parsed = timing.Best(tuple(runs["fluent-bit-parsed"]))
    parsed_rate = events / parsed.wall
    parsed_text = (
        f"Fluent Bit tail + 1 regex parser → es: {parsed_rate:,.0f} events/s, "
        f"{min(server_cpu['fluent-bit-parsed']) * 1e6:.0f} µs of Elasticsearch CPU/document"
    )
    if lost["fluent-bit-parsed"]:
        parsed_text += f", lost up to {lost['fluent-bit-parsed']:,}"
    rows.append(Row("  events/s, parsed anchor", rate_text, parsed_text, f"{rate / parsed_rate:.2f}× rate"))
    # The same guarantee as ours: every line stored, once (ids), whatever 429s come; read from the store.
    for run in retried:
        if "Generate_ID" in run.setting:
            if not run.count:
                rows.append(Row("  events/s, every line stored once", rate_text, "Fluent Bit stored nothing"))
                continue
            held = min(run.count, events) / run.seconds
            anchor_text = (
                f"Fluent Bit told to retry without limit, with ids, unbounded answers: {held:,.0f} events/s stored"
            )
            if run.count < events:
                anchor_text += f" ({run.count:,}: {events - run.count:,} lines not stored or sharing an id)"
            rows.append(Row("  events/s, every line stored once", rate_text, anchor_text, f"{rate / held:.2f}× rate"))
    return rows


@dataclass(frozen=True)
class Stored:
    """What a shipper's run left in the store: ``count`` documents, the last of them ``seconds`` after its start."""

    setting: str
    seconds: float
    count: int


def fluent_bit_until_stored(
    binary: str, args: argparse.Namespace, errors: Path, url: str, es_output: str
) -> list[Stored]:
    """Fluent Bit told never to give up, once each setting: how long until the store held what it came to hold.

    Its process outlives the work (it waits out ``grace`` for retries it scheduled far ahead), so the time is read from
    the store: the index is counted every half second, and a run ends once it holds every distinct line (with ids), or
    once its count stood still for 30 s, or when Fluent Bit exits.
    """
    import httpx

    import ship_bench

    distinct = len(set(errors.read_bytes().splitlines()))  # a line repeated exactly gets the same Generate_ID
    results: list[Stored] = []
    # With ids first: the run without them leaves the store millions of duplicates to merge for minutes after.
    # Buffer_Size False: a bulk answer over the default 512 KB counts as a failed flush and the chunk is sent again.
    for setting in ("Retry_Limit no_limits, Generate_ID On, Buffer_Size False", "Retry_Limit no_limits"):
        target = f"bench-fluent-bit-{len(results)}-retrying"
        options = "".join(f"\n    {option.strip()}" for option in setting.split(","))
        config = fluent_bit_config(args.workdir, errors, f"{es_output} {target}{options}", parser=False, grace=180)
        started = time.perf_counter()
        child = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        count, moved = 0, started
        try:
            while child.poll() is None and time.perf_counter() - moved < 30:
                time.sleep(0.5)
                try:
                    now = ship_bench.stored("elasticsearch", url, target)
                except httpx.HTTPStatusError:  # no index yet
                    now = 0
                if now != count:
                    count, moved = now, time.perf_counter()
                if count == distinct and "Generate_ID" in setting:
                    break
        finally:
            child.kill()  # what it stored is counted; asked to stop, it would wait out its grace
            child.wait()
        results.append(Stored(setting, moved - started, count))
        httpx.delete(f"{url}/{target}", timeout=60).raise_for_status()
    return results


def per_cpu_row(work: str, rates: list[float]) -> Row:
    best = max(rates)
    median = sorted(rates)[len(rates) // 2]
    return Row(
        work,
        f"{best:,.0f} events/CPU-s (med {median:,.0f})",
        target=f"≥ {SERVE_TARGET:,} events/CPU-s",
        met=verdict(best >= SERVE_TARGET),
    )


def serve_row(args: argparse.Namespace) -> Row:
    frames = max(1, args.errors_lines // serve_bench.ENTRIES)
    rates = []
    for _ in range(args.runs):
        events, _, cpu = serve_bench.measure(frames, [])
        rates.append(events / cpu)
    return per_cpu_row(f"serve, Forward frames with acks ({frames * serve_bench.ENTRIES:,} events)", rates)


def filter_row(args: argparse.Namespace) -> Row:
    records = filter_bench.records_file(args.workdir, args.errors_lines, 1.0)
    rates = []
    for _ in range(args.runs):
        cpu, _, _ = filter_bench.measure(records, [])
        rates.append(args.errors_lines / cpu)
    return per_cpu_row(f"fluentd-filter, all send errors ({args.errors_lines:,} records)", rates)


def print_table(rows: list[Row]) -> None:
    header = Row("work", "named-senderr", "anchor", "ratio", "target", "met?")
    table = [header, *rows]
    print("\n| " + " | ".join(header.__dict__.values()) + " |")
    print("|" + "---|" * len(header.__dict__))
    for row in table[1:]:
        print("| " + " | ".join(row.__dict__.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of the mixed log (1 %% send errors)")
    parser.add_argument("--errors-lines", type=int, default=200_000, help="lines of the all-send-errors log")
    parser.add_argument("--runs", type=int, default=5, help="runs of each command, interleaved (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 runs of each")
    parser.add_argument(
        "--fluent-bit-retries",
        action="store_true",
        help="also ship with Fluent Bit told to retry without limit, with and without ids (2 to 5 minutes more)",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {','.join(SECTIONS)}")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "named-senderr-bench", help="input cache"
    )
    args = parser.parse_args()
    args.runs = 2 if args.quick else args.runs
    skip = {name for name in args.skip.split(",") if name}
    if skip - set(SECTIONS):
        parser.error(f"--skip: unknown section(s) {', '.join(sorted(skip - set(SECTIONS)))}; known: {SECTIONS}")
    mixed = timing.generated_log(args.workdir, args.lines, 0.01)
    errors = timing.generated_log(args.workdir, args.errors_lines, 1.0)
    binary = fluent_bit_binary()
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.runs} runs of each, interleaved; "
        f"Fluent Bit: {binary or 'none (set FLUENT_BIT)'}",
        flush=True,
    )
    rows: list[Row] = []
    if "parse" not in skip:
        rows += parse_rows(args, errors, mixed, binary)
    if "ship" not in skip:
        rows += ship_rows(args, errors, binary)
    if "serve" not in skip:
        rows.append(serve_row(args))
    if "filter" not in skip:
        rows.append(filter_row(args))
    print_table(rows)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}: wall figures mean little when it is above the cores")


if __name__ == "__main__":
    main()

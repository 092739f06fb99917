"""Benchmark `named-senderr parse` as a whole process, beside a naive loop and grep.

Each command runs on the same generated file; CPU time (user + sys) and peak RSS
come from the kernel (os.wait4) for that one process, Python start-up included.

    python bench/parse_bench.py                 # 1M lines at 1 %, 200k send errors
    python bench/parse_bench.py --lines 250000 --skip-naive

Targets (issue 2): 1,000,000 lines at 1 % send errors to ECS in <= 0.25 s CPU;
a file of only send errors at >= 300,000 events/s; RSS flat in input size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import timing

NAIVE = """
import json, sys
from pygrok import Grok
grok = Grok("%{NAMED_SENDERR_CHANNEL}", custom_patterns_dir=sys.argv[2])
out = sys.stdout
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        match = grok.match(line.rstrip("\\n"))
        if match:
            out.write(json.dumps(match) + "\\n")
"""


PHRASES = ("error sending response", "send failed", "Sending UDP messages failed")


def grep_command(path: Path, count: bool = True) -> list[str]:
    """``grep -F`` (``-c``: counting) for the send-error phrases; run it with LC_ALL=C."""
    return ["grep", "-cF" if count else "-F", *(f"-e{phrase}" for phrase in PHRASES), str(path)]


@dataclass
class Result:
    name: str
    cpu: float
    rss_mb: float
    events: int | None


def measure(name: str, argv: list[str], count: bool) -> Result:
    """Run ``argv`` with stdout to a file; CPU and peak RSS of that process only."""
    with tempfile.TemporaryFile() as out:
        done = timing.run(argv, stdout=out, env={**os.environ, "LC_ALL": "C"}, ok=(0, 1))
        events = timing.count_lines(out) if count else None
    return Result(name, done.cpu, done.rss_mb, events)


def report(title: str, path: Path, lines: int, results: list[Result]) -> None:
    size = path.stat().st_size / 1_048_576
    print(f"\n{title}: {path.name}, {lines:,} lines, {size:.0f} MiB")
    print(f"  {'command':<34}{'CPU s':>8}{'lines/s':>14}{'events/s':>13}{'peak RSS MB':>13}")
    for r in results:
        events = f"{r.events / r.cpu:,.0f}" if r.events is not None else "-"
        print(f"  {r.name:<34}{r.cpu:>8.3f}{lines / r.cpu:>14,.0f}{events:>13}{r.rss_mb:>13.1f}")


def run_file(path: Path, lines: int, args: argparse.Namespace, title: str) -> None:
    cli = shutil.which("named-senderr") or sys.exit("named-senderr is not on PATH; pip install . first")
    from named_senderr.parse.grok import patterns_dir

    # The first run after a change to patterns/ expands them with pygrok (~0.25 s) and caches
    # the result; measure that once, then the runs a user sees every day.
    cold = measure("first run (pattern cache filled)", [cli, "parse", str(path)], True)
    results = [measure("named-senderr parse (ecs)", [cli, "parse", str(path)], True)]
    results.append(measure("named-senderr parse --format flat", [cli, "parse", "--format", "flat", str(path)], True))
    results.append(measure("grep -F (3 phrases)", grep_command(path, count=False), True))
    if not args.skip_naive:
        naive = [sys.executable, "-c", NAIVE, str(path), str(patterns_dir())]
        results.append(measure("naive loop: pygrok on every line", naive, True))
    report(title, path, lines, results)
    print(f"  (this run's first parse took {cold.cpu:.3f} s CPU, pattern cache included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines in the mixed log (default 1,000,000)")
    parser.add_argument("--errors-only-lines", type=int, default=200_000, help="lines in the all-send-errors log")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "named-senderr-bench")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow naive pygrok loop")
    args = parser.parse_args()
    mixed = timing.generated_log(args.workdir, args.lines, 0.01)
    only = timing.generated_log(args.workdir, args.errors_only_lines, 1.0)
    quarter = timing.generated_log(args.workdir, args.lines // 4, 0.01)

    run_file(mixed, args.lines, args, "Mixed log, 1 % send errors")
    run_file(only, args.errors_only_lines, args, "Only send errors")
    cli = shutil.which("named-senderr") or ""
    small = measure("parse, 1/4 of the lines", [cli, "parse", str(quarter)], False)
    large = measure("parse, all lines", [cli, "parse", str(mixed)], False)
    print(
        f"\nMemory in input size: {args.lines // 4:,} lines -> {small.rss_mb:.1f} MB, {args.lines:,} lines -> {large.rss_mb:.1f} MB peak RSS"
    )


if __name__ == "__main__":
    main()

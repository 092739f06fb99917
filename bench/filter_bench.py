"""Benchmark `named-senderr fluentd-filter` as a whole process, fed as Fluentd's out_exec_filter feeds it.

The input is concatenated msgpack maps with the line as bin (Fluentd's in_tail
packs lines as ASCII-8BIT), made from generate_log.py's named log; stdin is
that file, stdout a file whose records are counted. CPU time (user + sys) and
peak RSS come from the kernel (os.wait4) for that one process, start-up included.

    python bench/filter_bench.py                  # 1M records at 1 %, 200k send errors
    python bench/filter_bench.py --lines 250000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import msgpack

import timing


def records_file(workdir: Path, lines: int, error_rate: float) -> Path:
    """The msgpack input, made once from a generated named log."""
    log = timing.generated_log(workdir, lines, error_rate)
    path = log.with_suffix(".msgpack")
    if path.exists():
        return path
    packer = msgpack.Packer(use_bin_type=True)
    with open(log, "rb") as lines_in, open(path, "wb") as out:
        out.writelines(packer.pack({"message": line.rstrip(b"\n")}) for line in lines_in)
    return path


def measure(path: Path, extra: list[str]) -> tuple[float, float, int]:
    """CPU seconds, peak RSS in MB and output records of one filter run over ``path``."""
    argv = [*timing.NAMED_SENDERR, "fluentd-filter", "--key", "message", *extra]
    with open(path, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile() as log:
        done = timing.run([*argv, "--log-file", log.name], stdin=stdin, stdout=out)
        out.seek(0)
        records = sum(1 for _ in msgpack.Unpacker(out, raw=True, strict_map_key=False))
    return done.cpu, done.rss_mb, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="records in the mixed input (default 1,000,000)")
    parser.add_argument("--errors-only-lines", type=int, default=200_000, help="records that are all send errors")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "named-senderr-bench")
    args = parser.parse_args()
    runs = [
        ("mixed, 1 % send errors", args.lines, 0.01, []),
        ("mixed, --format ecs", args.lines, 0.01, ["--format", "ecs"]),
        ("mixed, --non-matching pass", args.lines, 0.01, ["--non-matching", "pass"]),
        ("only send errors", args.errors_only_lines, 1.0, []),
        ("only send errors, --client-ip truncate", args.errors_only_lines, 1.0, ["--client-ip", "truncate:/24,/56"]),
    ]
    print(f"  {'input and options':<40}{'records':>10}{'CPU s':>8}{'records/s':>12}{'out':>10}{'peak RSS MB':>13}")
    for name, lines, rate, extra in runs:
        cpu, rss, out = measure(records_file(args.workdir, lines, rate), extra)
        print(f"  {name:<40}{lines:>10,}{cpu:>8.2f}{lines / cpu:>12,.0f}{out:>10,}{rss:>13.1f}")


if __name__ == "__main__":
    main()

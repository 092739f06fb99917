"""``named-senderr run --config pipeline.toml``: any pipeline of named sources, transforms and sinks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from named_senderr.cli.ship import deliver, stop_on_signals
from named_senderr.engine.pipeline import EXAMPLE, SOURCES, TRANSFORMS, load_pipeline, run_config
from named_senderr.settings.loading import URL_FORMS

EPILOG = f"""\
the file ({EXAMPLE} is a commented example that runs as shipped):
  [sources.NAME]     type = {", ".join(sorted(SOURCES))}; each line is parsed first, whatever its source
  [transforms.NAME]  type = {", ".join(sorted(TRANSFORMS))}; inputs = ["NAME", ...] says what it reads
  [sinks.NAME]       url = a sink URL (below); inputs = [...]; the settings of ship's [[sinks]] tables
  [queue] [batch] [retry] [metrics], timezone, host, dead_letter, rejects: as in ship --config
  any graph: a transform or sink reads any sources and transforms, several may read one; an ack waits for
  every sink a batch's events went to
  relative paths are taken relative to the file; unknown keys are refused with a suggestion

sink URLs, as ship --to takes them:
  {URL_FORMS}

output, exit status, signals and the disk queue: as for ship (named-senderr ship --help)

examples:
  named-senderr run --config conf/pipeline.toml
  named-senderr run --config /etc/named-senderr/pipeline.toml --check
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run",
        help="run a pipeline file: [sources.*] -> [transforms.*] -> [sinks.*]",
        description="Run the pipeline a TOML file describes: named sources, transforms and sinks wired by their "
        "inputs, checked whole before anything is read or sent.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE.toml", help=f"the pipeline (see {EXAMPLE})")
    parser.add_argument(
        "--check", action="store_true", help="check the file, print the pipeline on stderr, run nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no live line, even on a terminal")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.config)
    if args.check:
        print(f"named-senderr: {args.config}: {pipeline.describe()}", file=sys.stderr)
        return 0
    with stop_on_signals(pipeline.delivery.queue.dir is not None or pipeline.endless) as stop:
        return deliver(not args.no_progress, lambda warn, report: run_config(pipeline, warn, report, stop))

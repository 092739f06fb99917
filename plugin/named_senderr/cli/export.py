"""``named-senderr export``: native pipeline configs, generated from patterns/ and the reason taxonomy."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from named_senderr.errors import InputError
from named_senderr.export import fluent_bit, ingest_pipeline, logstash

EPILOG = """\
Without -o the files go to stdout (one file as is; several, each after a
'==> NAME <==' line). Regenerate after every change to patterns/: the copies
in conf/ are compared with a fresh export by the tests.

examples:
  named-senderr export fluent-bit -o /etc/fluent-bit/named-senderr
  named-senderr export fluent-bit --format classic -o conf/fluent-bit
  named-senderr export logstash -o conf/logstash
  named-senderr export ingest-pipeline | curl -XPUT -H 'Content-Type: application/json' \\
      http://127.0.0.1:9200/_ingest/pipeline/named-senderr --data-binary @-
"""

TARGETS: dict[str, Callable[[argparse.Namespace], dict[str, str]]] = {
    "fluent-bit": lambda args: fluent_bit.render(args.format),
    "logstash": lambda _args: logstash.render(),
    "ingest-pipeline": lambda _args: ingest_pipeline.render(),
}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="generate Fluent Bit, Logstash or Elasticsearch ingest configs",
        description="Generate the configuration of a native pipeline (no Python on the host) from the same "
        "Grok patterns and reason taxonomy the parser uses.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", choices=sorted(TARGETS), help="what to generate")
    parser.add_argument(
        "--format", choices=fluent_bit.FORMATS, default="yaml", help="Fluent Bit config format (default: yaml)"
    )
    parser.add_argument("-o", "--output", type=Path, metavar="DIR", help="write the files into DIR (created)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rendered = TARGETS[args.target](args)
    if args.output is None:
        if len(rendered) == 1:
            sys.stdout.write(next(iter(rendered.values())))
        else:
            sys.stdout.write("\n".join(f"==> {name} <==\n{text}" for name, text in rendered.items()))
        return 0
    for name, text in rendered.items():
        path = args.output / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{path}: cannot write: {exc.strerror}; choose another -o DIR") from exc
        print(f"named-senderr: wrote {path}", file=sys.stderr)
    return 0

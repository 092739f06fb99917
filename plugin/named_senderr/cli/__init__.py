"""The ``named-senderr`` command: one module per subcommand, stdout for data only."""

from __future__ import annotations

import argparse
import sys

from named_senderr import __version__
from named_senderr.cli import parse as parse_command
from named_senderr.cli import patterns as patterns_command
from named_senderr.errors import ConfigError, NamedSenderrError

DESCRIPTION = """\
Turn BIND named "error sending response" / "send failed" / "Sending UDP
messages failed" log lines into structured events (a normalized reason, the
client address and port, the query name, the server).

examples:
  named-senderr parse --sample --stats          the bundled sample log
  named-senderr parse /var/log/named/named.log  ECS NDJSON on stdout
  zcat -f named.log.*.gz | named-senderr parse - --format flat
  named-senderr patterns                        the Grok patterns, compiled
"""

EXIT_OK, EXIT_INPUT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="named-senderr", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parse_command.register(commands)
    patterns_command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"named-senderr: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NamedSenderrError as exc:
        print(f"named-senderr: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("named-senderr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `named-senderr parse big.log | head`: the reader left, which is fine.
        sys.stderr.close()
        return EXIT_OK

"""The ``named-senderr`` command: one module per subcommand, stdout for data only."""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

from named_senderr import __version__
from named_senderr.errors import ConfigError, NamedSenderrError

# Subcommand -> module. Only the module of the command being run is imported:
# `parse` must not pay for httpx, msgpack or asyncio at start-up.
COMMANDS = {
    "parse": "named_senderr.cli.parse",
    "patterns": "named_senderr.cli.patterns",
    "fluentd-filter": "named_senderr.cli.fluentd_filter",
    "serve": "named_senderr.cli.serve",
    "ship": "named_senderr.cli.ship",
    "run": "named_senderr.cli.run",
    "setup": "named_senderr.cli.setup",
    "tail": "named_senderr.cli.tail",
    "listen": "named_senderr.cli.listen",
    "export": "named_senderr.cli.export",
    "report": "named_senderr.cli.report",
    "hostcheck": "named_senderr.cli.hostcheck",
}

DESCRIPTION = """\
Turn BIND named "error sending response" / "send failed" / "Sending UDP
messages failed" log lines into structured events (a normalized reason, the
client address and port, the query name, the server).

examples:
  named-senderr parse --sample --stats          the bundled sample log
  named-senderr parse /var/log/named/named.log  ECS NDJSON on stdout
  zcat -f named.log.*.gz | named-senderr parse - --format flat
  named-senderr patterns                        the Grok patterns, compiled
  named-senderr tail '/var/log/named/*.log'     follow files across rotation
  named-senderr listen --syslog udp://:5514     syslog receiver on 127.0.0.1
  named-senderr export fluent-bit -o DIR        Fluent Bit parsers + Lua, no Python needed
  named-senderr fluentd-filter                  Fluentd exec_filter child (msgpack)
  named-senderr serve --forward 127.0.0.1:24224 Forward protocol receiver
  named-senderr ship named.log --to loki+http://127.0.0.1:3100
  named-senderr run --config conf/pipeline.toml sources -> transforms -> sinks
  named-senderr setup elasticsearch --to elasticsearch+http://127.0.0.1:9200/named-senderr
"""

EXIT_OK, EXIT_INPUT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``command`` only that subcommand's (cheaper to import)."""
    parser = argparse.ArgumentParser(
        prog="named-senderr", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if command is None or command == name:
            importlib.import_module(module).register(commands)
    return parser


def collect_less_often() -> None:
    """Events and lines hold no cycles: each is freed by its reference count once its batch is written.

    The cyclic collector still walks every young object each 700 allocations, a tenth of ``parse``'s CPU on a
    log of send errors: what start-up made is frozen out of its sight, and it runs 50,000 allocations apart.
    A cycle that holds large data is then kept long: cut it where it is made (sinks/http.py does for httpx),
    and a whole-process test shows it (tests/test_ship_memory.py).
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main(argv: list[str] | None = None) -> int:
    """The command line; ``argv`` given (a caller in the same process, tests): its collector is left alone."""
    own_process = argv is None
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    if own_process:
        collect_less_often()
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

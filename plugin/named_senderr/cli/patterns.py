"""``named-senderr patterns``: the top-level Grok patterns and the regexes they compile to."""

from __future__ import annotations

import argparse

from named_senderr.parse.grok import load_line_patterns, patterns_dir


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "patterns",
        help="print the compiled Grok patterns",
        description="Print each top-level NAMED_SENDERR_* Grok pattern and the anchored regular "
        "expression it compiles to. The same files work in Logstash (patterns_dir) and "
        "fluent-plugin-grok-parser (custom_pattern_path).",
    )
    parser.add_argument("--grok-only", action="store_true", help="print the Grok source, not the expansion")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(f"# patterns directory: {patterns_dir()}")
    for pattern in load_line_patterns():
        print(f"{pattern.name} {pattern.grok}")
        if not args.grok_only:
            print(f"  => {pattern.regex.pattern}")
    return 0

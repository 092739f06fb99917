"""The topology of a ``run --config`` file, checked before anything runs (as Vector's builder does).

Components are wired by name: each transform and sink lists its ``inputs``,
any sources and transforms. Any shape runs (engine/topology.py): a sink may
read a source straight or any transform, a transform several inputs (fan-in),
several components one (fan-out), and each source its own branch. What is
checked: known names, no sink as an input, no cycle, nothing that feeds
nobody. Each refusal names the table, the key and what to change.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from named_senderr.errors import ConfigError

Wiring = Mapping[str, Sequence[str]]  # component name -> the names in its ``inputs``


def transform_order(where: str, sources: Sequence[str], transforms: Wiring, sinks: Wiring) -> list[str]:
    """The transforms in an order where each comes after its inputs, after checking the whole graph."""
    tables = {name: "sources" for name in sources}
    for table, names in (("transforms", transforms), ("sinks", sinks)):
        for name in names:
            if name in tables:
                raise ConfigError(
                    f"{where}: {tables[name]}.{name} and {table}.{name} share the name {name!r}, so inputs "
                    "could not tell them apart; rename one"
                )
            tables[name] = table
    for table, wiring in (("transforms", transforms), ("sinks", sinks)):
        for name, inputs in wiring.items():
            _check_inputs(where, f"{table}.{name}", inputs, tables)
    order = _check_cycles(where, transforms)
    read = {i for wiring in (transforms, sinks) for inputs in wiring.values() for i in inputs}
    for name, table in tables.items():
        if table != "sinks" and name not in read:
            raise ConfigError(
                f"{where}: {table}.{name} feeds nothing; name it in the inputs of a transform or sink, "
                "or remove the table"
            )
    return order


def _check_inputs(where: str, component: str, inputs: Sequence[str], tables: Mapping[str, str]) -> None:
    if not inputs:
        raise ConfigError(
            f'{where}: {component} has no inputs; add inputs = ["NAME"] naming the source or transform it reads'
        )
    for name in inputs:
        if inputs.count(name) > 1:
            raise ConfigError(f"{where}: {component}: inputs names {name!r} twice; keep one")
        if tables.get(name) == "sinks":
            raise ConfigError(
                f"{where}: {component}: inputs names sinks.{name}, but a sink passes nothing on; "
                "name a source or a transform"
            )
        if name not in tables:
            known = sorted(n for n, t in tables.items() if t != "sinks")
            close = difflib.get_close_matches(name, known, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{where}: {component}: inputs names {name!r}, which is no source or transform; {fix}")


def _check_cycles(where: str, transforms: Wiring) -> list[str]:
    """Depth first from each transform along its inputs; a name met again on the path closes a cycle.

    The transforms in the order they were done: each after its inputs.
    """
    done: dict[str, None] = {}  # ordered

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join(reversed([*path[path.index(name) :], name]))  # the way the events would flow
            raise ConfigError(
                f"{where}: transforms.{name}: its inputs lead back to itself ({cycle}); "
                "let one of them read a source instead"
            )
        if name in done or name not in transforms:
            return
        for upstream in transforms[name]:
            visit(upstream, [*path, name])
        done[name] = None

    for name in transforms:
        visit(name, [])
    return list(done)

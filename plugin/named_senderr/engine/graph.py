"""The topology of a ``run --config`` file, checked before anything runs (as Vector's builder does).

Components are wired by name: each transform and sink lists its ``inputs``.
The checks any graph must pass come first (known names, no sink as an input,
no cycle, nothing that feeds nobody); then the shape this engine runs: every
source into one chain of transforms, its end into every sink. Each refusal
names the table, the key and what to change.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from named_senderr.errors import ConfigError

Wiring = Mapping[str, Sequence[str]]  # component name -> the names in its ``inputs``
ONE_CHAIN = "a pipeline here is one chain: every source -> the transforms one after another -> every sink"


def chain_order(where: str, sources: Sequence[str], transforms: Wiring, sinks: Wiring) -> list[str]:
    """The transforms in the order their ``inputs`` give, after checking the whole graph."""
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
    _check_cycles(where, transforms)
    read = {i for wiring in (transforms, sinks) for inputs in wiring.values() for i in inputs}
    for name, table in tables.items():
        if table != "sinks" and name not in read:
            raise ConfigError(
                f"{where}: {table}.{name} feeds nothing; name it in the inputs of a transform or sink, "
                "or remove the table"
            )
    return _one_chain(where, sources, transforms, sinks)


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


def _check_cycles(where: str, transforms: Wiring) -> None:
    """Depth first from each transform along its inputs; a name met again on the path closes a cycle."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join(reversed([*path[path.index(name) :], name]))  # the way the events would flow
            raise ConfigError(
                f"{where}: transforms.{name}: its inputs lead back to itself ({cycle}); "
                "let the first transform of the chain read sources"
            )
        if name in done or name not in transforms:
            return
        for upstream in transforms[name]:
            visit(upstream, [*path, name])
        done.add(name)

    for name in transforms:
        visit(name, [])


def _one_chain(where: str, sources: Sequence[str], transforms: Wiring, sinks: Wiring) -> list[str]:
    """Follow the chain from the transform that reads the sources; refuse what would branch or merge."""
    order: list[str] = []
    feed: list[str] = list(sources)  # what the next component must read: the sources, then the last transform
    while True:
        readers = [name for name, inputs in transforms.items() if set(inputs) & set(feed)]
        if not readers:
            break
        if len(readers) > 1:
            shown = " and ".join(f"transforms.{r}" for r in readers)
            what = "the sources" if feed == list(sources) else f"transforms.{feed[0]}"
            raise ConfigError(f"{where}: {shown} both read {what}; {ONE_CHAIN}, so let one of them read the other")
        name = readers[0]
        _same_inputs(where, f"transforms.{name}", transforms[name], feed)
        order.append(name)
        feed = [name]
    for name, inputs in sinks.items():
        _same_inputs(where, f"sinks.{name}", inputs, feed)
    return order


def _same_inputs(where: str, component: str, inputs: Sequence[str], feed: Sequence[str]) -> None:
    if set(inputs) != set(feed):
        raise ConfigError(
            f"{where}: {component}: inputs = [{_listed(inputs)}] does not fit; {ONE_CHAIN}, "
            f"so this one reads inputs = [{_listed(feed)}]"
        )


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)

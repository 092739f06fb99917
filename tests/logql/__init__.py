"""LogQL checked by Grafana's own grammar, after Grafana's own variable interpolation; no Loki server.

Grafana Loki is AGPL and is never built or run here. What the project ships in LogQL (the Grafana
dashboard, the alert rules, the queries of ``report --from loki+``) is parsed instead by
``@grafana/lezer-logql`` (Apache-2.0; its dependencies ``@lezer/lr`` and ``@lezer/common`` are MIT),
the parser behind Grafana's Loki query editor, pinned with its integrity hashes in ``package-lock.json``
beside this file. ``npm ci`` installs it once into ``~/.cache/named-senderr/npm`` (or
``$NAMED_SENDERR_NPM_CACHE``), under the test servers' cache lock so parallel runs install it once. Its 0.4
releases declare ``engines: node >= 24`` for their own build tools; the parser is plain JavaScript
and runs on Node 20, so the engine check is turned off (tests/test_logql.py shows it parsing).

Without node or npm, or when the install fails, the tests skip, except under ``CI=true`` where
they fail: CI must never go green because the grammar quietly did not run.

``interpolate`` does to a dashboard query what Grafana does before it reaches Loki (Grafana 11/12):
- the browser (``public/app/plugins/datasource/loki/datasource.ts``, ``applyTemplateVariables``) fills
  the dashboard's template variables through ``templateSrv.replace`` with ``interpolateQueryExpr``: a
  single-valued variable goes in as it is; a multi-value or include-all one has each value
  regex-escaped (``lokiSpecialRegexEscape``) and joined with ``|``. It leaves ``$__auto``,
  ``$__interval``, ``$__interval_ms`` and ``$__range*`` for the backend; unknown names stay as written;
- the backend (``pkg/tsdb/loki/parse_query.go``, ``interpolateVariables``) then replaces
  ``$__interval_ms`` (milliseconds), ``$__interval`` (``gtime.FormatInterval``: the largest whole unit
  only), ``$__range_ms``, ``$__range_s`` and ``$__range`` (rounded seconds, ``3600s``), and ``$__auto``
  (the range for an instant query, the step for a range one; the step is
  ``max(interval, range / 11000)`` rounded up to the millisecond, ``step.go``), then the ``${...}``
  spellings of the same (not ``${__auto}``).
``$__rate_interval`` is a Prometheus data source variable: Grafana's Loki data source never fills it,
so a Loki query that uses it reaches Loki as written and fails, and fails this check too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from tests import servers

__all__ = ["GrammarUnavailable", "Parsed", "interpolate", "leftover_variables", "parse", "require_grammar"]

HERE = Path(__file__).resolve().parent
INSTALL_TIMEOUT = 300.0
PARSE_TIMEOUT = 60.0
BACKEND_VARIABLES = ("__auto", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms")
_TEMPLATE = re.compile(r"\$(\w+)|\[\[(\w+)\]\]|\$\{(\w+)\}")  # $var, [[var]], ${var}: templateSrv's plain forms
_LEFTOVER = re.compile(r"\$\{?\w+|\[\[\w+\]\]")


class GrammarUnavailable(servers.ServerError):
    """Installing the grammar failed (a missing node or npm is ``servers.ToolMissing``)."""


@dataclass(frozen=True)
class Parsed:
    """One expression as the grammar saw it: error spans (``[from, to)``), top node kind, label names, tree."""

    expr: str
    errors: list[tuple[int, int]]
    kind: str | None  # "MetricExpr" or "LogExpr"
    names: list[tuple[str, str]]  # (the node a label name sits in, the name)
    tree: str

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def labels_read(self) -> set[str]:
        """Labels the query selects, filters or groups by, less those its own ``label_format`` makes."""
        made = {name for node, name in self.names if node == "LabelFormatMatcher"}
        return {name for _, name in self.names} - made

    def explain(self) -> str:
        """The expression with each error span marked, for a failure message."""
        marks = ", ".join(
            f"at {a}: {self.expr[max(0, a - 15) : a]}»{self.expr[a : max(b, a + 1)]}«" for a, b in self.errors
        )
        return f"{self.expr}\n  grammar errors {marks}\n  tree {self.tree}"


def cache_dir() -> Path:
    root = os.environ.get("NAMED_SENDERR_NPM_CACHE") or "~/.cache/named-senderr/npm"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def install() -> Path:
    """``npm ci`` the locked grammar once into the cache; a changed lock gets a fresh directory."""
    servers.require_tool("node")
    npm = servers.require_tool("npm")
    manifest = (HERE / "package.json").read_bytes() + (HERE / "package-lock.json").read_bytes()
    root = cache_dir()
    home = root / f"lezer-logql-{hashlib.sha256(manifest).hexdigest()[:12]}"
    marker = home / "node_modules" / "@grafana" / "lezer-logql" / "package.json"
    if marker.exists():
        return home
    with servers.cache_lock("lezer-logql"):
        if marker.exists():
            return home
        staging = home.with_name(home.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HERE / name, staging / name)
        cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--engine-strict=false",
               "--cache", str(root / "_npm")]  # fmt: skip
        env = {**os.environ, "npm_config_update_notifier": "false"}
        try:
            done = subprocess.run(cmd, cwd=staging, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise GrammarUnavailable(f"npm ci did not finish within {INSTALL_TIMEOUT:.0f} s in {staging}") from None
        if done.returncode != 0:
            raise GrammarUnavailable(f"npm ci exited with {done.returncode} in {staging}:\n{done.stderr[-2000:]}")
        staging.rename(home)
    return home


_state: dict[str, Path | str] = {}


def require_grammar() -> Path:
    """The installed grammar's directory; skip the test without it, or fail it under ``CI=true``.

    The outcome is kept for the session, so a missing tool costs one attempt, not one per test.
    """
    if not _state:
        try:
            _state["home"] = install()
        except servers.ServerError as exc:  # GrammarUnavailable, or ToolMissing: no node or npm
            _state["reason"] = str(exc)
    if "home" in _state:
        return Path(_state["home"])
    message = f"Grafana's LogQL grammar unavailable: {_state['reason']}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def parse(exprs: list[str]) -> list[Parsed]:
    """Parse every expression with one node process."""
    home = require_grammar()
    done = subprocess.run(
        [servers.require_tool("node"), str(HERE / "parse.mjs"), str(home)],
        input=json.dumps(exprs),
        capture_output=True,
        text=True,
        timeout=PARSE_TIMEOUT,
    )
    if done.returncode != 0:
        raise AssertionError(f"parse.mjs exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return [
        Parsed(expr, [tuple(span) for span in r["errors"]], r["kind"], [tuple(n) for n in r["names"]], r["tree"])
        for expr, r in zip(exprs, json.loads(done.stdout), strict=True)
    ]


def format_interval(interval: timedelta) -> str:
    """``gtime.FormatInterval``: the largest unit that fits, whole; 90 s is ``1m``, under 1 ms is ``1ms``."""
    ms = int(interval / timedelta(milliseconds=1))
    for unit, size in (("y", 365 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


def step_for(interval: timedelta, time_range: timedelta) -> timedelta:
    """``calculateStep`` without a query step, resolution 1: the interval, at least range / 11000, ceil to ms."""
    chosen = max(interval, time_range / 11000)
    return timedelta(milliseconds=-(-chosen // timedelta(milliseconds=1)))


def regex_escape(value: str) -> str:
    """``lokiSpecialRegexEscape``: a backslash becomes four, each regex metacharacter gets two before it."""
    return re.sub(r"[$^*{}\[\]+?.()|]", lambda m: "\\\\" + m[0], value.replace("\\", "\\\\\\\\"))


def interpolate(
    expr: str,
    *,
    query_type: str,
    time_range: timedelta,
    interval: timedelta,
    variables: Mapping[str, str] | None = None,
    multi: Mapping[str, list[str]] | None = None,
) -> str:
    """``expr`` as Grafana sends it to Loki for a panel query (``query_type`` ``range`` or ``instant``).

    ``variables`` are the dashboard's single-valued template variables with their current values,
    ``multi`` its multi-value or include-all ones with the values selected. Names this does not model
    (``$__from``, ``$__to``, ``$__rate_interval``...) stay as written, for ``leftover_variables`` to find.
    """
    single, several = dict(variables or {}), dict(multi or {})

    def frontend(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name in BACKEND_VARIABLES:
            return match[0]
        if name in single:
            return single[name]
        if name in several:
            return "|".join(regex_escape(v) for v in several[name])
        return match[0]

    expr = _TEMPLATE.sub(frontend, expr)
    interval_ms = str(int(interval / timedelta(milliseconds=1)))
    range_ms = int(time_range / timedelta(milliseconds=1))
    range_s = str(round(range_ms / 1000))
    step = format_interval(step_for(interval, time_range))
    backend = [("$__interval_ms", interval_ms), ("$__interval", format_interval(interval)),
               ("$__range_ms", str(range_ms)), ("$__range_s", range_s), ("$__range", range_s + "s")]  # fmt: skip
    for name, value in backend:
        expr = expr.replace(name, value)
    expr = expr.replace("$__auto", range_s + "s" if query_type == "instant" else step)
    for name, value in backend:
        expr = expr.replace("${" + name[1:] + "}", value)
    return expr


def leftover_variables(expr: str) -> list[str]:
    """Variables still in an interpolated expression: Grafana sent them to Loki as written."""
    return _LEFTOVER.findall(expr)

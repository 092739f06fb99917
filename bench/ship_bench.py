"""Shipping speed and peak memory into real servers on loopback, beside a naive client.

Generates a named log where every line is a send error, starts each server
from the test suite's cache (tests/servers), warms it up on another file, and
runs ``named-senderr ship`` as a child process: events/s from start to exit,
the client's CPU seconds and peak RSS from wait4 (client CPU well below the
wall time means the server, sharing the machine's cores, is the limit; the
server's own CPU seconds, over its whole process group, are the last column). The
naive client parses the same file with the same reader and parser but sends
one HTTP request per event (for at most --naive-seconds). Every stored count
is checked afterwards, so a fast but lossy run cannot pass. A "null" row ships
to a local server that answers success at once: the client's own ceiling.
"loki" is the Loki push sink into VictoriaLogs' Loki endpoint (Loki itself is not built here).

    python bench/ship_bench.py --events 300000
    python bench/ship_bench.py --events 100000 --servers victorialogs --naive-seconds 10
    python bench/ship_bench.py --events 1200000 --null-only     # memory does not grow with the input
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

import timing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402
from tests.faults import FaultServer, Reply  # noqa: E402

NAMED_SENDERR = timing.NAMED_SENDERR
LOGS_STORES = ("loki", "victorialogs")  # both shipped into a VictoriaLogs, counted by job with LogsQL


def start(name: str) -> servers.Server:
    return servers.start("victorialogs" if name == "loki" else name)


def stored(name: str, base: str, target: str) -> int:
    if name in LOGS_STORES:
        httpx.get(f"{base}/internal/force_flush", timeout=120).raise_for_status()
        query = f'{{job="{target}"}} | stats count() n'
        reply = httpx.post(f"{base}/select/logsql/query", data={"query": query, "start": "0"}, timeout=120)
        rows = reply.text.splitlines()
        return int(orjson.loads(rows[0])["n"]) if rows else 0
    httpx.post(f"{base}/{target}/_refresh", timeout=120).raise_for_status()
    return httpx.get(f"{base}/{target}/_count", timeout=60).json()["count"]


def sink_url(name: str, base: str, target: str) -> str:
    if name == "loki":
        return f"loki+{base}/insert?job={target}&_msg_field=message"
    return f"victorialogs+{base}?job={target}" if name == "victorialogs" else f"{name}+{base}/{target}"


def warm_up(name: str, server: servers.Server, warmup: Path) -> None:
    """The server's JIT and caches warm up on another file, unmeasured."""
    url = sink_url(name, server.url, "bench-warmup")
    subprocess.run([*NAMED_SENDERR, "ship", str(warmup), "--to", url, "--no-progress"], check=True, capture_output=True)


def ship_once(name: str, server: servers.Server, command: list[str], target: str) -> tuple[timing.Run, float, int]:
    """Run a client ``command`` (its URL last) into ``target``: the run, the server's CPU seconds, the stored count."""
    url = sink_url(name, server.url, target)
    if name not in LOGS_STORES:
        subprocess.run([*NAMED_SENDERR, "setup", "elasticsearch", "--to", url], check=True, capture_output=True)
    before = timing.group_cpu(server.process.pid)
    done = timing.run([*command, url])
    return done, timing.group_cpu(server.process.pid) - before, stored(name, server.url, target)


def ship_command(log: Path) -> list[str]:
    return [*NAMED_SENDERR, "ship", str(log), "--timezone", "UTC", "--no-progress", "--to"]


def bench_server(name: str, log: Path, warmup: Path, events: int, naive_seconds: float) -> list[str]:
    server = start(name)
    try:
        warm_up(name, server, warmup)
        rows = []
        naive_command = [sys.executable, __file__, "--naive", name, str(log), str(naive_seconds)]
        for label, target, command in (
            ("named-senderr ship", "bench-ship", ship_command(log)),
            ("naive, 1 request/event", "bench-naive", naive_command),
        ):
            done, server_cpu, count = ship_once(name, server, command, target)
            sent = int(done.stderr.split()[-1]) if target == "bench-naive" else events
            check = "ok" if count == sent else f"MISMATCH: {count} stored"
            rate = sent / done.wall
            rows.append(
                f"{name:<18} {label:<24} {sent:>9,} {rate:>10,.0f} {done.cpu:>8.1f} {done.rss_mb:>7.0f}"
                f" {server_cpu:>9.1f}   {check}"
            )
        return rows
    finally:
        server.stop()


def bench_null(name: str, log: Path, events: int) -> str:
    """The client alone: a server that answers every request with success at once, storing nothing."""
    answers = {"loki": Reply(204), "victorialogs": Reply(200)}
    answer = answers.get(name, Reply(200, b'{"errors":false}', {"Content-Type": "application/json"}))
    flags = Reply(404)  # no /flags here: the VictoriaLogs sink then refuses nothing for its age
    with FaultServer(lambda request, n: flags if request.path == "/flags" else answer, record=False) as server:
        url = sink_url(name, server.url, "bench-null")
        done = timing.run([*ship_command(log), url])
        seconds, cpu, rss = done.wall, done.cpu, done.rss_mb
    label = "named-senderr ship"
    return f"{'null ' + name:<18} {label:<24} {events:>9,} {events / seconds:>10,.0f} {cpu:>8.1f} {rss:>7.0f}   (nothing stored)"


def naive(name: str, url: str, log: str, seconds: float) -> None:
    """One plain JSON request per event (PUT _create/<id>, a one-entry push or line) on a keep-alive connection.

    Same reader, parser and documents as ``ship``; prints how many were sent on stderr.
    """
    from named_senderr.engine.printing import ingest_now
    from named_senderr.engine.transforms import ParseLines
    from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
    from named_senderr.parse.named import NamedLineParser
    from named_senderr.settings.loading import sink_from_url
    from named_senderr.sinks.loki import PUSH_PATH, push_body
    from named_senderr.sinks.registry import open_sink
    from named_senderr.sinks.victorialogs import INSERT_PATH
    from named_senderr.sources.files import FileSource
    from named_senderr.telemetry import Stats

    config = sink_from_url(url, {}, "bench", None)
    sink = open_sink(config, ingest_now())
    stats = Stats()
    parse = ParseLines(NamedLineParser(TimestampNormalizer(resolve_zone("UTC"))), stats)
    client = httpx.Client(base_url=config.url, headers={"Content-Type": "application/json"}, timeout=60)
    deadline = time.monotonic() + seconds
    sent = 0
    for event in (e for batch in FileSource((log,), stats, print).batches() for e in parse(batch.lines)):
        item, _ = sink.encode(event)
        if name == "loki":
            reply = client.post(PUSH_PATH, content=push_body([item], config.labels, config.job))
        elif name == "victorialogs":
            reply = client.post(INSERT_PATH, content=item[2], params=sink.params)
        else:
            action, document = item.splitlines()
            ident = action.split(b'"')[5].decode()
            reply = client.put(f"/{config.index}/_create/{ident}", content=document)
        reply.raise_for_status()
        sent += 1
        if time.monotonic() > deadline:
            break
    client.close()
    sink.close()
    print(sent, file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000, help="send-error lines to generate")
    parser.add_argument("--servers", default="elasticsearch,opensearch,victorialogs,loki", help="comma-separated")
    parser.add_argument("--naive-seconds", type=float, default=15.0, help="time budget of the naive client")
    parser.add_argument("--null-only", action="store_true", help="only the client's ceiling (no real server)")
    parser.add_argument("--naive", nargs=4, metavar=("KIND", "LOG", "SECONDS", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive:
        kind, log, seconds, url = args.naive
        return naive(kind, url, log, float(seconds))
    with tempfile.TemporaryDirectory(prefix="ship-bench-") as tmp:
        log = Path(tmp) / "named.log"
        generate = [sys.executable, str(ROOT / "bench" / "generate_log.py"), "--lines", str(args.events)]
        subprocess.run([*generate, "--error-rate", "1", "-o", str(log)], check=True)
        warmup = Path(tmp) / "warmup.log"  # the server's JIT and caches warm up on this, unmeasured
        subprocess.run(
            [*generate, "--lines", "150000", "--seed", "7", "--error-rate", "1", "-o", str(warmup)], check=True
        )
        print(
            f"input: {args.events:,} send-error lines, {log.stat().st_size / 1_048_576:.0f} MiB; {os.cpu_count()} cores"
        )
        print(
            f"{'server':<18} {'client':<24} {'events':>9} {'events/s':>10} {'CPU s':>8} {'RSS MB':>7}"
            f" {'server s':>9}   stored"
        )
        for name in args.servers.split(","):
            print(bench_null(name, log, args.events), flush=True)
            if not args.null_only:
                for row in bench_server(name, log, warmup, args.events, args.naive_seconds):
                    print(row, flush=True)


if __name__ == "__main__":
    main()

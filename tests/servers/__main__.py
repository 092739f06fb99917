"""``python -m tests.servers prepare [NAME|all]`` fills the cache (CI runs it before pytest, with progress);
``python -m tests.servers run NAME`` starts one server and prints its URL until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from . import SERVER_NAMES, ServerError, cache_dir, prepare, start

FIRST_TIME = {
    "victorialogs": " (builds from its Go module: about 1.5 min the first time)",
    "kafka": " (copies its jars with Maven: about 30 s the first time)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="download/build into the cache")
    prep.add_argument("name", nargs="?", default="all", choices=[*SERVER_NAMES, "all"])
    run = sub.add_parser("run", help="start one server and wait for Ctrl-C")
    run.add_argument("name", choices=SERVER_NAMES)
    run.add_argument("--keep-data", action="store_true", help="keep the data dir after stopping")
    args = parser.parse_args(argv)

    try:
        if args.command == "prepare":
            names = SERVER_NAMES if args.name == "all" else (args.name,)
            print(f"cache: {cache_dir()}", flush=True)
            for name in names:
                slow = FIRST_TIME.get(name, "")
                print(f"{name}: preparing{slow}…", flush=True)
                t0 = time.monotonic()
                home = prepare(name)
                print(f"{name}: ready in {home} ({time.monotonic() - t0:.1f}s)", flush=True)
            return 0
        t0 = time.monotonic()
        server = start(args.name, keep_data=args.keep_data)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop cleanly when killed, too
    try:
        print(f"{server.name} {server.version} up in {time.monotonic() - t0:.1f}s", flush=True)
        print(f"url:  {server.url}\nlog:  {server.log}\ndata: {server.data_dir}\nCtrl-C to stop.", flush=True)
        while server.process.poll() is None:
            time.sleep(1)
        print(f"{server.name} exited with {server.process.returncode}; see {server.log}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

"""``named-senderr run --config``: the shipped example runs, every table and the wiring are checked first.

A refused file exits 2 with one line naming the table, the key and the fix, before anything is read or
printed: each refusal test also checks that stdout stayed empty.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from named_senderr.cli import main
from named_senderr.engine.pipeline import load_pipeline, run_config
from named_senderr.engine.shipping import ShipResult
from named_senderr.sources.files import SAMPLE_LOG
from tests.polling import wait_until
from tests.test_forward_output import Receiver
from tests.test_tail_cli import checkpointed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "conf" / "pipeline.toml"
SAMPLE = '[sources.sample]\ntype = "file"\nsample = true\n'
STDOUT = '[sinks.out]\nurl = "stdout:?format=flat"\n'
LINE = "21-Nov-2026 05:10:00.000 client @0x7f 192.0.2.1#{port} (a.example): error sending response: would block"


def run(tmp_path: Path, text: str, *args: str) -> int:
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    return main(["run", "--config", str(path), "--no-progress", *args])


def refused(tmp_path: Path, capsys, text: str) -> str:
    """The one line a refused file gets; nothing may have been printed on stdout."""
    assert run(tmp_path, text) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_shipped_example_prints_what_ship_prints_with_the_same_options(tmp_path: Path, capsys, monkeypatch) -> None:
    """Run from another directory: the example finds the bundled sample wherever it is run from."""
    ship = ["--client-ip", "truncate:/24,/56", "--qname", "suffix:2", "--rollup", "60s", "--to", "stdout:?format=flat"]
    assert main(["ship", "--sample", "--timezone", "UTC", "--no-progress", *ship]) == 0
    expected = capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", str(EXAMPLE), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected and len(expected.splitlines()) == 21
    assert "39 events from 400 lines of 1 input(s)" in captured.err


def test_check_prints_the_wiring_on_stderr_and_runs_nothing(capsys) -> None:
    assert main(["run", "--config", str(EXAMPLE), "--check"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("sources.sample (file) -> transforms.hide (privacy) -> transforms.per_minute (rollup) -> "
            "sinks.out (stdout:)") in captured.err  # fmt: skip


def test_shipped_branch_example_checks_once_uncommented(tmp_path: Path, capsys) -> None:
    """The commented branch of conf/pipeline.toml is a working file: raw events beside the rolled-up ones."""
    text = EXAMPLE.read_text()
    start = text.index("# [sinks.raw]")
    block = text[start : text.index("\n\n", start)]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    (tmp_path / "pipeline.toml").write_text(text.replace(block, uncommented))
    assert main(["run", "--config", str(tmp_path / "pipeline.toml"), "--check"]) == 0
    err = capsys.readouterr().err
    assert "sources.sample (file) -> sinks.raw (elasticsearch+http://127.0.0.1:9200/named-senderr-raw)" in err
    assert "transforms.per_minute (rollup) -> sinks.rolled (victorialogs+http://127.0.0.1:9428)" in err


def test_transforms_run_in_the_order_their_inputs_give_not_the_order_of_the_tables(tmp_path: Path, capsys) -> None:
    """Hashing addresses before the rollup leaves every client its own network; after it, the /24s group."""
    key = tmp_path / "key"
    key.write_text("k" * 32)
    for first, second in (("hide", "per_minute"), ("per_minute", "hide")):
        tables = {"per_minute": 'type = "rollup"\nwindow = 60\n', "hide": 'type = "privacy"\nclient_ip = "hash:key"\n'}
        inputs = {first: "sample", second: first}
        text = SAMPLE + STDOUT.replace("\n", f'\ninputs = ["{second}"]\n', 1)
        text += "".join(f'[transforms.{n}]\ninputs = ["{inputs[n]}"]\n{tables[n]}' for n in ("per_minute", "hide"))
        assert run(tmp_path, text) == 0
        out = capsys.readouterr().out.splitlines()
        assert all('"client_ip":"fd' in line for line in out if '"client_ip":null' not in line)
        assert len(out) == (37 if first == "hide" else 21)  # ship --rollup 60s alone: 21 events


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'{SAMPLE}path = ["x.log"]\n', "sources.sample: unknown key 'path'; did you mean 'paths'?"),
        (
            SAMPLE + '[sinks.loki]\nurl = "loki+http://127.0.0.1:9"\ninputs = ["sample"]\nlables = ["job"]\n',
            "sinks.loki: loki+http://127.0.0.1:9: unknown key 'lables'; did you mean 'labels'?",
        ),
        (
            SAMPLE + STDOUT + 'inputs = ["r"]\n[transforms.r]\ntype = "rollup"\ninputs = ["sample"]\nwindw = 60\n',
            "transforms.r: unknown key 'windw'; did you mean 'window'?",
        ),
        (f"{SAMPLE}{STDOUT}[queue]\ndri = 'q'\n", "unknown key 'queue.dri'; did you mean 'dir'?"),
        (
            f"{SAMPLE}{STDOUT}[metrics]\nadress = '9108'\n",
            "unknown key 'metrics.adress'; did you mean 'address'?",
        ),
        (f"timezon = 'UTC'\n{SAMPLE}{STDOUT}", "unknown key 'timezon'; did you mean 'timezone'?"),
        (
            f"{SAMPLE.replace('file', 'fille')}{STDOUT}",
            "sources.sample: type 'fille' is no source; did you mean 'file'?",
        ),
    ],
    ids=["source", "sink", "transform", "queue", "metrics", "top", "type"],
)
def test_unknown_key_is_refused_with_the_table_and_a_suggestion(tmp_path: Path, capsys, text: str, message: str):
    assert message in refused(tmp_path, capsys, text)


def test_secret_in_a_sink_table_is_refused_as_ship_refuses_it(tmp_path: Path, capsys) -> None:
    text = SAMPLE + '[sinks.es]\nurl = "elasticsearch+http://127.0.0.1:9/i"\ninputs = ["sample"]\npassword = "x"\n'
    err = refused(tmp_path, capsys, text)
    assert "sinks.es: elasticsearch+http://127.0.0.1:9/i: password: secrets are not taken from a config file" in err


CHAIN = '[transforms.a]\ntype = "rollup"\nwindow = 60\ninputs = ["sample"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SAMPLE + STDOUT, 'sinks.out has no inputs; add inputs = ["NAME"] naming the source or transform it reads'),
        (SAMPLE + STDOUT + 'inputs = ["sampel"]\n',
         "sinks.out: inputs names 'sampel', which is no source or transform; did you mean 'sample'?"),
        (SAMPLE + STDOUT + 'inputs = ["b"]\n' + CHAIN.replace('["sample"]', '["b"]')
         + '[transforms.b]\ntype = "privacy"\nqname = "drop"\ninputs = ["a"]\n',
         "transforms.a: its inputs lead back to itself (a -> b -> a); let one of them read a source instead"),
        (SAMPLE + STDOUT + 'inputs = ["sample"]\n[sinks.more]\nurl = "stdout:"\ninputs = ["out"]\n',
         "sinks.more: inputs names sinks.out, but a sink passes nothing on; name a source or a transform"),
        (SAMPLE + '[sources.other]\ntype = "stdin"\n' + STDOUT + 'inputs = ["sample"]\n',
         "sources.other feeds nothing; name it in the inputs of a transform or sink, or remove the table"),
        (SAMPLE + STDOUT + 'inputs = ["sample"]\n[transforms.sample]\ntype = "rollup"\nwindow = 60\n'
         'inputs = ["sample"]\n', "sources.sample and transforms.sample share the name 'sample'"),
        (SAMPLE, 'no [sinks.NAME] table; add one, e.g. [sinks.out] url = "stdout:"'),
    ],
    ids=["no-inputs", "missing-input", "cycle", "sink-as-input", "unread-source", "same-name", "no-sinks"],
)  # fmt: skip
def test_bad_graph_is_refused_before_anything_runs(tmp_path: Path, capsys, text: str, message: str) -> None:
    assert message in refused(tmp_path, capsys, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[sources.live]\ntype = "follow"\npaths = ["*.log"]\n',
         'sources.live: no checkpoint; add checkpoint = "FILE" (where it keeps how far it read), or a [queue] dir'),
        ('[sources.a]\ntype = "stdin"\n[sources.b]\ntype = "stdin"\n',
         "sources.a and sources.b both use standard input; keep one"),
        ('[sources.a]\ntype = "follow"\npaths = ["*.log"]\ncheckpoint = "c.json"\n'
         '[sources.b]\ntype = "follow"\npaths = ["x/*.log"]\ncheckpoint = "c.json"\n', "both use the checkpoint"),
        ('[sources.a]\ntype = "file"\npaths = ["-"]\n', 'paths: "-" is standard input; read it with a source of type'),
        (SAMPLE + '[transforms.p]\ntype = "privacy"\ninputs = ["sample"]\n',
         "transforms.p: changes nothing; set client_ip, qname or both, or remove the table"),
        (SAMPLE + '[transforms.p]\ntype = "privacy"\ninputs = ["sample"]\nclient_ip = "hash:missing.key"\n',
         "transforms.p: hash key file "),
        (SAMPLE + '[transforms.p]\ntype = "privacy"\ninputs = ["sample"]\nclient_ip = "mask"\n',
         "transforms.p: client_ip 'mask': use truncate:/24,/56 or hash:KEYFILE"),
        (SAMPLE + '[transforms.r]\ntype = "rollup"\ninputs = ["sample"]\nwindow = "soon"\n',
         "transforms.r: window 'soon': give 1 s or more, e.g. \"60s\" or \"5m\""),
        (SAMPLE + '[[sinks]]\nurl = "stdout:"\n', "sinks must be tables by name, [sinks.NAME] (the [[sinks]] list is"),
        (SAMPLE + '[sinks.a]\nurl = "stdout:"\ninputs = ["sample"]\n[sinks.b]\nurl = "stdout:?format=flat"\n'
         'inputs = ["sample"]\n', "sinks.a and sinks.b both send to stdout:"),
    ],
    ids=["follow-no-checkpoint", "two-stdin", "one-checkpoint", "file-dash", "privacy-empty", "privacy-key",
         "privacy-mode", "window", "ship-format", "two-stdout"],
)  # fmt: skip
def test_bad_component_is_refused_naming_its_table(tmp_path: Path, capsys, text: str, message: str) -> None:
    text += "" if "[sinks" in text else STDOUT + 'inputs = ["a"]\n'
    assert message in refused(tmp_path, capsys, text)


def test_follow_checkpoint_defaults_to_the_queue_dir(tmp_path: Path, capsys) -> None:
    text = f'[queue]\ndir = "q"\n[sources.live]\ntype = "follow"\npaths = ["*.log"]\n{STDOUT}inputs = ["live"]\n'
    (tmp_path / "pipeline.toml").write_text(text)
    settings = load_pipeline(tmp_path / "pipeline.toml").sources[0].settings
    assert settings.checkpoint == tmp_path / "q" / "live.checkpoint.json"
    assert settings.paths == (tmp_path / "*.log",)  # relative to the file, like every path in it


def printed(capsys) -> list[dict]:
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


def rolled_up(entries: list) -> list[tuple]:
    """(client network, reason, count) of each event, sorted: what a rollup branch must deliver."""
    return sorted((r["client_ip"] or "", r["reason"], r["repeat_count"]) for r in entries)


def forwarded(receiver: Receiver) -> list[dict]:
    return [record for _, _, record in receiver.entries]


BRANCHES = """timezone = "UTC"
[sources.sample]
type = "file"
sample = true
[transforms.hide]
type = "privacy"
inputs = ["sample"]
client_ip = "truncate:/24,/56"
[transforms.per_minute]
type = "rollup"
inputs = ["hide"]
window = "60s"
[sinks.raw]
url = "stdout:?format=flat"
inputs = ["sample"]
[sinks.rolled]
url = "forward://127.0.0.1:{port}"
format = "flat"
inputs = ["per_minute"]
"""


def test_one_source_sends_raw_events_to_one_sink_and_rolled_up_ones_to_another(tmp_path: Path, capsys) -> None:
    """Refused until branches ("sinks.raw: inputs = ["sample"] does not fit"): a sink may read the source itself.

    The raw branch prints exactly what ``parse`` prints, client addresses whole although the privacy stage on
    the other branch rewrote its own copies; the forward peer gets exactly what ``ship`` rolls up.
    """
    assert main(["parse", str(SAMPLE_LOG), "--format", "flat", "--timezone", "UTC"]) == 0
    raw = printed(capsys)
    ship = ["--client-ip", "truncate:/24,/56", "--rollup", "60s", "--to", "stdout:?format=flat"]
    assert main(["ship", "--sample", "--timezone", "UTC", "--no-progress", *ship]) == 0
    expected = rolled_up(printed(capsys))
    receiver = Receiver()
    try:
        assert run(tmp_path, BRANCHES.format(port=receiver.port)) == 0
    finally:
        receiver.stop()
    assert printed(capsys) == raw and len(raw) == 39
    assert rolled_up(forwarded(receiver)) == expected and len(expected) == 21


def test_two_sources_go_through_their_own_transforms(tmp_path: Path, capsys) -> None:
    """Refused until branches ("transforms.a and transforms.b both read the sources"): sources.own is not hidden."""
    own = tmp_path / "own.log"
    own.write_text("".join(LINE.format(port=1000 + n) + "\n" for n in range(25)))
    text = (
        SAMPLE
        + f"""[sources.own]
type = "file"
paths = ["{own}"]
[transforms.hide]
type = "privacy"
inputs = ["sample"]
client_ip = "truncate:/24,/56"
{STDOUT}inputs = ["hide", "own"]
"""
    )
    assert run(tmp_path, text) == 0
    events = printed(capsys)
    ours = [e for e in events if e["file"] == str(own)]
    theirs = [e for e in events if e["file"] == str(SAMPLE_LOG)]
    assert len(ours) == 25 and len(theirs) == 39 and len(events) == 64
    assert {e["client_ip"] for e in ours} == {"192.0.2.1"}  # whole
    assert all(e["client_ip"] is None or e["client_ip"].endswith((".0", "::")) for e in theirs)  # a network


def test_check_prints_what_each_transform_and_sink_reads_when_the_pipeline_branches(tmp_path: Path, capsys) -> None:
    (tmp_path / "pipeline.toml").write_text(BRANCHES.format(port=9))
    assert main(["run", "--config", str(tmp_path / "pipeline.toml"), "--check"]) == 0
    assert (
        "sources.sample (file) -> transforms.hide (privacy); transforms.hide (privacy) -> transforms.per_minute "
        "(rollup); sources.sample (file) -> sinks.raw (stdout:); transforms.per_minute (rollup) -> sinks.rolled "
        "(forward://127.0.0.1:9)"
    ) in capsys.readouterr().err


FOLLOWED = """timezone = "UTC"
dead_letter = "dead.ndjson"
[retry]
initial_backoff = 0.05
max_backoff = 0.2
max_attempts = 1000
[batch]
max_wait = 0.1
[sources.live]
type = "follow"
paths = ["named.log"]
read_from_head = true
poll_interval = 0.05
checkpoint = "live.json"
[transforms.per_second]
type = "rollup"
inputs = ["live"]
window = "1s"
[sinks.raw]
url = "stdout:?format=flat"
inputs = ["live"]
[sinks.rolled]
url = "forward://127.0.0.1:{port}"
format = "flat"
inputs = ["per_second"]
"""


def test_follow_checkpoint_waits_for_the_branch_whose_sink_is_down(tmp_path: Path, capsys, free_port: int) -> None:
    """The raw branch has every event, the rollup let go of its windows, the forward peer is down: the
    checkpoint stays where it was until the peer is up and acknowledged the rolled-up events."""
    log = tmp_path / "named.log"
    log.write_text("".join(LINE.format(port=1000 + n) + "\n" for n in range(300)))
    (tmp_path / "pipeline.toml").write_text(FOLLOWED.format(port=free_port))
    receiver = None
    try:
        with running(tmp_path / "pipeline.toml") as live:
            wait_until(lambda: live and live[-1].sinks["stdout:"].sent == 300, 30)
            rolled = f"forward://127.0.0.1:{free_port}"
            wait_until(lambda: live[-1].sinks[rolled].retried >= 3, 30)  # the windows left the rollup, and bounce
            assert checkpointed(tmp_path / "live.json") == 0
            receiver = Receiver(free_port)
            wait_until(lambda: checkpointed(tmp_path / "live.json") == log.stat().st_size, 30)
            assert sum(r["repeat_count"] for r in forwarded(receiver)) == 300
    finally:
        if receiver is not None:
            receiver.stop()
    assert len(printed(capsys)) == 300


def test_routes_kept_in_the_disk_queue_survive_a_restart(tmp_path: Path, capsys, free_port: int) -> None:
    """First run: the peer is down, the queue keeps the rolled-up events and the checkpoint moves. Second run,
    the log unchanged, the peer up: it gets exactly those events, and the raw sink nothing again."""
    log = tmp_path / "named.log"
    log.write_text("".join(LINE.format(port=1000 + n) + "\n" for n in range(300)))
    text = FOLLOWED.format(port=free_port).replace('checkpoint = "live.json"\n', "")
    (tmp_path / "pipeline.toml").write_text(text + '[queue]\ndir = "queue"\nshutdown_timeout = 0.5\n')
    checkpoint = tmp_path / "queue" / "live.checkpoint.json"
    with running(tmp_path / "pipeline.toml") as live:
        wait_until(lambda: checkpointed(checkpoint) == log.stat().st_size, 30)
        wait_until(lambda: live and live[-1].sinks[f"forward://127.0.0.1:{free_port}"].retried >= 3, 30)
    assert len(printed(capsys)) == 300
    receiver = Receiver(free_port)
    try:
        with running(tmp_path / "pipeline.toml"):
            wait_until(lambda: sum(r["repeat_count"] for r in forwarded(receiver)) >= 300, 30)
    finally:
        receiver.stop()
    assert printed(capsys) == []
    assert sum(r["repeat_count"] for r in forwarded(receiver)) == 300
    assert all(r["client_ip"] == "192.0.2.0" for r in forwarded(receiver))  # rolled up, not the raw ones


@contextmanager
def running(path: Path) -> Iterator[list[ShipResult]]:
    """``run_config`` of ``path`` in a thread, stopped as a signal would at the end; yields its live results."""
    stop = threading.Event()
    live: list[ShipResult] = []
    pipeline = load_pipeline(path)
    thread = threading.Thread(target=run_config, args=(pipeline, lambda message: None, live.append, stop), daemon=True)
    thread.start()
    try:
        yield live
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert not (path.parent / "dead.ndjson").exists()

"""``named-senderr run --config``: the shipped example runs, every table and the wiring are checked first.

A refused file exits 2 with one line naming the table, the key and the fix, before anything is read or
printed: each refusal test also checks that stdout stayed empty.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from named_senderr.cli import main
from named_senderr.engine.pipeline import load_pipeline

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "conf" / "pipeline.toml"
SAMPLE = '[sources.sample]\ntype = "file"\nsample = true\n'
STDOUT = '[sinks.out]\nurl = "stdout:?format=flat"\n'


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

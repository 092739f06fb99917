"""``run --config`` into the real Elasticsearch started by the suite, counted where a user would count.

The oracle for a pipeline with transforms is ``parse`` with the same options: the store must hold exactly
the events it prints. The follow test runs the real CLI as a process and stops it with SIGTERM.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from named_senderr.cli import main
from tests.test_durability import es_count, poll, terminate
from tests.test_ship_servers import REAL_LOGS, REAL_REASONS, logsql, logsql_counts, new_index, search

pytestmark = pytest.mark.servers
PATHS = ", ".join(f'"{path}"' for path in REAL_LOGS)
LINE = "21-Nov-2026 05:10:{second:02d}.000 client @0x7f 192.0.2.{host}#{port} (a.example): error sending response: would block\n"


def write_lines(path: Path, first: int, count: int) -> None:
    """``count`` distinct send errors (each its own client port), appended."""
    with open(path, "a") as log:
        for n in range(first, first + count):
            log.write(LINE.format(second=n % 60, host=n % 250 + 1, port=1024 + n))


def test_privacy_then_rollup_into_elasticsearch_stores_exactly_what_parse_prints(
    elasticsearch_url: str, tmp_path: Path, capsysbinary
) -> None:
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    options = ["--client-ip", "truncate:/24,/56", "--qname", "drop", "--rollup", "60s"]
    assert main(["parse", *REAL_LOGS, "--format", "flat", "--timezone", "UTC", *options]) == 0
    expected = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    (tmp_path / "pipeline.toml").write_text(f"""timezone = "UTC"
dead_letter = "dead.ndjson"
[sources.logs]
type = "file"
paths = [{PATHS}]
[transforms.hide]
type = "privacy"
inputs = ["logs"]
client_ip = "truncate:/24,/56"
qname = "drop"
[transforms.per_minute]
type = "rollup"
inputs = ["hide"]
window = "60s"
[sinks.es]
url = "{url}"
inputs = ["per_minute"]
""")
    assert main(["run", "--config", str(tmp_path / "pipeline.toml"), "--no-progress"]) == 0
    docs = [hit["_source"] for hit in search(elasticsearch_url, index, {"size": 1000})["hits"]["hits"]]
    stored = sorted(
        (d.get("client", {}).get("ip", ""), d["event"]["reason"], d["bind"]["rollup"]["count"]) for d in docs
    )
    assert stored == sorted((e["client_ip"] or "", e["reason"], e["count"]) for e in expected)
    assert len(docs) < sum(c for *_, c in stored) == sum(REAL_REASONS.values())  # rolled up, nothing lost
    assert not any("dns" in d for d in docs)  # qname dropped before anything left


@pytest.mark.parametrize("queue", ["memory", "disk"])
def test_raw_events_to_elasticsearch_and_rolled_up_ones_to_victorialogs_from_one_source(
    queue: str, elasticsearch_url: str, victorialogs_url: str, tmp_path: Path, capsysbinary
) -> None:
    """One source, two branches: Elasticsearch holds every send error as it was logged, VictoriaLogs exactly
    the events ``parse --rollup 60s`` prints, their counts adding up to the same send errors."""
    assert main(["parse", *REAL_LOGS, "--format", "flat", "--timezone", "UTC", "--rollup", "60s"]) == 0
    expected = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    errors = sum(REAL_REASONS.values())
    assert len(expected) < sum(e["repeat_count"] for e in expected) == errors
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    job = f"branches-{uuid.uuid4().hex[:8]}"
    (tmp_path / "pipeline.toml").write_text(f"""timezone = "UTC"
dead_letter = "dead.ndjson"
{"[queue]" if queue == "disk" else ""}
{'dir = "queue"' if queue == "disk" else ""}
[sources.logs]
type = "file"
paths = [{PATHS}]
[transforms.per_minute]
type = "rollup"
inputs = ["logs"]
window = "60s"
[sinks.es]
url = "{url}"
inputs = ["logs"]
[sinks.vl]
url = "victorialogs+{victorialogs_url}?job={job}"
inputs = ["per_minute"]
""")
    assert main(["run", "--config", str(tmp_path / "pipeline.toml"), "--no-progress"]) == 0
    assert es_count(elasticsearch_url, url.rsplit("/", 1)[1]) == errors
    query = f'{{job="{job}"}}'
    assert logsql_counts(victorialogs_url, query, {"": len(expected)}, by="") == {"": len(expected)}
    assert logsql(victorialogs_url, f"{query} | stats sum(bind.repeat_count) errors") == [{"errors": str(errors)}]
    assert not (tmp_path / "dead.ndjson").exists()


def test_file_and_follow_sources_together_store_every_event_once(elasticsearch_url: str, tmp_path: Path) -> None:
    """The files are read once, the followed log goes on growing; SIGTERM ends the run with exit 0."""
    url = new_index("elasticsearch", elasticsearch_url, tmp_path)
    index = url.rsplit("/", 1)[1]
    live = tmp_path / "live" / "named.log"
    live.parent.mkdir()
    write_lines(live, 0, 300)
    (tmp_path / "pipeline.toml").write_text(f"""timezone = "UTC"
dead_letter = "dead.ndjson"
[queue]
dir = "queue"
[batch]
max_wait = 0.2
[sources.old]
type = "file"
paths = [{PATHS}]
[sources.live]
type = "follow"
paths = ["live/*.log"]
read_from_head = true
[sinks.es]
url = "{url}"
inputs = ["old", "live"]
""")
    cmd = [sys.executable, "-m", "named_senderr", "run", "--config", "pipeline.toml", "--no-progress"]
    with open(tmp_path / "run.stderr", "wb") as stderr:
        process = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        before = sum(REAL_REASONS.values()) + 300
        assert poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= before, timeout=60) == before
        write_lines(live, 300, 200)  # appended while running: only the follow source sees them
        assert poll(lambda: es_count(elasticsearch_url, index), lambda n: n >= before + 200, timeout=60) == before + 200
        assert terminate(process) == 0
    finally:
        process.kill()
    httpx.post(f"{elasticsearch_url}/{index}/_refresh").raise_for_status()
    assert es_count(elasticsearch_url, index) == before + 200
    assert (tmp_path / "queue" / "live.checkpoint.json").is_file()
    assert "of 3 input(s)" in (tmp_path / "run.stderr").read_text()

"""ship into a real VictoriaLogs, checked with LogsQL the way a user checks.

Each test ships into its own ``job`` (or tenant), so tests sharing the server do not see each
other's entries. Counts are taken after ``/internal/force_flush``, which makes the last second's
entries searchable at once instead of polling for them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from named_senderr.cli import main
from named_senderr.normalize.timestamp import to_epoch_ns
from named_senderr.sinks.victorialogs import tenant_headers
from tests import servers
from tests.faults import FaultServer, Forward, Reply
from tests.polling import wait_until
from tests.servers import victorialogs
from tests.test_ship_servers import REAL_LOGS, REAL_REASONS, flat_events

pytestmark = pytest.mark.servers


def select(base: str, path: str, query: str, tenant: str | None = None) -> httpx.Response:
    """``/select/logsql/PATH`` over all time, after a flush."""
    headers = tenant_headers(tenant)
    httpx.get(f"{base}/internal/force_flush", headers=headers).raise_for_status()
    return httpx.post(f"{base}/select/logsql/{path}", data={"query": query, "start": "0"}, headers=headers)


def logsql(base: str, query: str, tenant: str | None = None) -> list[dict]:
    """Every line LogsQL answers for ``query``."""
    reply = select(base, "query", query, tenant)
    assert reply.status_code == 200, reply.text
    return [orjson.loads(line) for line in reply.text.splitlines()]


def count(base: str, job: str, tenant: str | None = None) -> int:
    rows = logsql(base, f'{{job="{job}"}} | stats count() n', tenant)
    return int(rows[0]["n"]) if rows else 0


def by_reason(base: str, job: str, field: str = "event.reason") -> dict[str, int]:
    return {r[field]: int(r["n"]) for r in logsql(base, f'{{job="{job}"}} | stats by ({field}) count() n')}


def ship(tmp_path: Path, url: str, *inputs: str, max_events: int = 5000) -> int:
    """The CLI with quick retries, so fault tests take milliseconds per retry."""
    config = tmp_path / "ship.toml"
    config.write_text(f"[batch]\nmax_events = {max_events}\n[retry]\ninitial_backoff = 0.01\nmax_backoff = 0.05\n")
    args = ["--config", str(config), "--timezone", "UTC", "--dead-letter", str(tmp_path / "dead.ndjson")]
    return main(["ship", *inputs, "--to", url, *args, "--no-progress"])


def new_job() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_stored_entries_by_reason_match_the_files(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()
    assert ship(tmp_path, f"victorialogs+{victorialogs_url}?job={job}", *REAL_LOGS) == 0
    assert by_reason(victorialogs_url, job) == REAL_REASONS


def test_time_is_the_events_time_and_msg_its_message(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()
    assert ship(tmp_path, f"victorialogs+{victorialogs_url}?job={job}", *REAL_LOGS) == 0
    stored = {(r["_time"], r["_msg"]) for r in logsql(victorialogs_url, f'{{job="{job}"}} | fields _time, _msg')}
    expected = {(e["timestamp"], e["message"]) for e in flat_events(*REAL_LOGS)}
    assert {(to_epoch_ns(t), m) for t, m in stored} == {(to_epoch_ns(t), m) for t, m in expected}


def test_streams_are_the_bounded_fields_only(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()
    assert ship(tmp_path, f"victorialogs+{victorialogs_url}?job={job}", *REAL_LOGS) == 0
    reply = select(victorialogs_url, "stream_field_names", f'{{job="{job}"}}')
    names = {v["value"] for v in reply.json()["values"]}
    assert names == {"job", "event.reason", "bind.message_kind"}  # and host.name, but these logs name no host
    ip = "2001:db8:53::2"
    expected = sum(1 for e in flat_events(*REAL_LOGS) if e["client_ip"] == ip)
    assert expected > 0 and logsql(victorialogs_url, f'{{job="{job}"}} client.ip:="{ip}" | stats count() n') == [
        {"n": str(expected)}
    ]


def test_flat_format_stores_the_flat_records_under_their_flat_names(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()
    url = f"victorialogs+{victorialogs_url}?job={job}&format=flat&stream_fields=job,reason"
    assert ship(tmp_path, url, *REAL_LOGS) == 0
    assert by_reason(victorialogs_url, job, "reason") == REAL_REASONS
    rows = logsql(victorialogs_url, f'{{job="{job}"}} | stats by (_stream) count() n')
    assert {r["_stream"] for r in rows} == {f'{{job="{job}",reason="{reason}"}}' for reason in REAL_REASONS}


def test_a_tenant_sees_only_its_own_entries(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()
    assert ship(tmp_path, f"victorialogs+{victorialogs_url}?job={job}&tenant=7:3", *REAL_LOGS) == 0
    total = sum(REAL_REASONS.values())
    assert count(victorialogs_url, job, "7:3") == total
    assert count(victorialogs_url, job) == 0 and count(victorialogs_url, job, "7:4") == 0


def test_answer_lost_after_storing_is_not_stored_again(victorialogs_url: str, tmp_path: Path, capsys) -> None:
    job = new_job()
    # Request 0 is the sink's look at /flags, 1 the insert.
    with FaultServer(lambda request, n: Forward(victorialogs_url), lose_answer=frozenset({1})) as proxy:
        assert ship(tmp_path, f"victorialogs+{proxy.url}?job={job}", *REAL_LOGS) == 0
    total = sum(REAL_REASONS.values())
    assert proxy.cuts == 1 and count(victorialogs_url, job) == total
    assert f"({total} already stored)" in capsys.readouterr().err


def test_429_storm_and_cut_requests_in_front_lose_and_duplicate_nothing(victorialogs_url: str, tmp_path: Path) -> None:
    job = new_job()

    def plan(request, n: int) -> Reply | Forward:
        refuse = request.path.startswith("/insert") and n < 4  # 0 is the sink's look at /flags
        return Reply(429, b"cannot add rows into storage in read-only mode") if refuse else Forward(victorialogs_url)

    with FaultServer(plan, cut=frozenset({4}), lose_answer=frozenset({5, 10})) as proxy:
        assert ship(tmp_path, f"victorialogs+{proxy.url}?job={job}", *REAL_LOGS, max_events=50) == 0
    assert proxy.cuts == 3 and by_reason(victorialogs_url, job) == REAL_REASONS


def own_victorialogs(retention: str = "100y", flags: tuple[str, ...] = ()) -> servers.Server:
    """A VictoriaLogs for one test (stop it); skipped where it cannot start, failed under CI=true."""
    try:
        server = victorialogs.start(servers.prepare("victorialogs"), retention=retention, flags=flags)
    except servers.ServerError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"victorialogs unavailable: {exc}", pytrace=False)
        pytest.skip(f"victorialogs unavailable: {exc}")
    server._cleanup.append(lambda: shutil.rmtree(server.data_dir, ignore_errors=True))
    return server


@pytest.fixture
def full_victorialogs(tmp_path: Path) -> Iterator[tuple[servers.Server, Path]]:
    """A VictoriaLogs of this test's own whose storage is a 40 MiB tmpfs, and a file that fills it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    server = own_victorialogs()
    storage = server.data_dir / "storage"
    server.halt()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(storage)], check=True)
    try:
        server.resume()
        filler = storage / "filler"
        free = os.statvfs(storage).f_bavail * os.statvfs(storage).f_frsize
        filler.write_bytes(b"\0" * (free - 4 * 1024 * 1024))  # under -storage.minFreeDiskSpaceBytes (10 MB)
        wait_until(lambda: read_only(server.url), timeout=10)  # it looks at the free space every 2 s
        yield server, filler
    finally:
        server.halt()
        subprocess.run(["umount", str(storage)], check=False)
        server.stop()


def read_only(base: str) -> bool:
    return any(
        line.startswith("vl_storage_is_read_only") and line.endswith(" 1")
        for line in httpx.get(f"{base}/metrics").text.splitlines()
    )


def test_real_read_only_storage_429_is_retried_until_space_returns(full_victorialogs, tmp_path: Path) -> None:
    server, filler = full_victorialogs
    job = new_job()
    config = tmp_path / "ship.toml"
    config.write_text("[retry]\ninitial_backoff = 0.05\nmax_backoff = 0.2\nmax_attempts = 10000\ndeadline = 120\n")
    command = [sys.executable, "-m", "named_senderr", "ship", *REAL_LOGS, "--to", f"victorialogs+{server.url}?job={job}",
               "--config", str(config), "--timezone", "UTC", "--no-progress",
               "--dead-letter", str(tmp_path / "dead.ndjson")]  # fmt: skip
    shipper = subprocess.Popen(command, stderr=subprocess.PIPE)
    wait_until(lambda: server.log.read_text().count("read-only mode") >= 3, timeout=30)  # its 429s, logged
    assert shipper.poll() is None and count(server.url, job) == 0, "refused, still retrying, nothing stored"
    filler.unlink()
    _, err = shipper.communicate(timeout=60)
    assert shipper.returncode == 0 and count(server.url, job) == sum(REAL_REASONS.values())
    retried = re.search(r"retried ([\d,]+), dead-lettered 0$", err.decode(), re.MULTILINE)
    assert retried and int(retried[1].replace(",", "")) >= 3 * sum(REAL_REASONS.values())


@pytest.fixture
def short_retention_victorialogs() -> Iterator[servers.Server]:
    """A VictoriaLogs of this test's own that keeps one day: the real logs' days are older."""
    server = own_victorialogs("1d")
    yield server
    server.stop()


def test_entries_older_than_the_servers_retention_are_dead_lettered_not_lost(
    short_retention_victorialogs: servers.Server, tmp_path: Path
) -> None:
    """VictoriaLogs would answer 200 and skip them; the sink reads -retentionPeriod and says so instead."""
    base, job = short_retention_victorialogs.url, new_job()
    assert ship(tmp_path, f"victorialogs+{base}?job={job}", *REAL_LOGS) == 3
    dead = [orjson.loads(line) for line in (tmp_path / "dead.ndjson").read_bytes().splitlines()]
    assert len(dead) == sum(REAL_REASONS.values()) and count(base, job) == 0
    assert "-retentionPeriod=1d" in dead[0]["reason"] and dead[0]["document"]["job"] == job


PASSWORD = "vl-Pa55-shown-nowhere"


@pytest.fixture
def password_victorialogs(monkeypatch) -> Iterator[servers.Server]:
    """A VictoriaLogs of this test's own that demands basic auth (its -httpAuth.* flags) on every path."""
    monkeypatch.setenv("VL_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("VL_WRONG_PASSWORD", "wr0ng")
    server = own_victorialogs(flags=("-httpAuth.username=shipper", f"-httpAuth.password={PASSWORD}"))
    yield server
    server.stop()


def test_basic_auth_is_sent_on_every_request_and_every_entry_stored(
    password_victorialogs: servers.Server, tmp_path: Path, capfd
) -> None:
    base, job = password_victorialogs.url, new_job()
    assert (
        ship(tmp_path, f"victorialogs+{base}?job={job}&username=shipper&password_env=VL_TEST_PASSWORD", *REAL_LOGS) == 0
    )
    query = {"query": f'{{job="{job}"}} | stats count() n', "start": "0"}
    auth = ("shipper", PASSWORD)
    httpx.get(f"{base}/internal/force_flush", auth=auth).raise_for_status()
    assert httpx.post(f"{base}/select/logsql/query", data=query, auth=auth).json() == {
        "n": str(sum(REAL_REASONS.values()))
    }
    assert PASSWORD not in "".join(capfd.readouterr())


def test_a_wrong_password_stops_the_sink_with_the_fix_and_is_never_shown(
    password_victorialogs: servers.Server, tmp_path: Path, capfd
) -> None:
    url = f"victorialogs+{password_victorialogs.url}?username=shipper&password_env=VL_WRONG_PASSWORD"
    assert ship(tmp_path, url, *REAL_LOGS) == 4
    output = "".join(capfd.readouterr()) + (tmp_path / "dead.ndjson").read_text()
    assert "401" in output and "password_env" in output and PASSWORD not in output and "wr0ng" not in output

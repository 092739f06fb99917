"""One snapshot of the host figures ISC's checklist asks for, read from /proc, /sys and BIND.

Roots are parameters (``--proc``, ``--sys``) so tests and post-mortems read copies;
nothing here needs root. A file that is missing is None, not an error: containers
often hide /sys, and ``lo`` has no duplex.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from named_senderr.errors import InputError

if TYPE_CHECKING:  # the statistics channel needs httpx, which only --stats-url pays for
    from named_senderr.hostcheck.statschannel import Stats

DATASET = "bind.host_counters"  # event.dataset of a ``hostcheck --emit`` record
UDP_FIELDS = ("SndbufErrors", "RcvbufErrors", "InErrors")
SYSCTLS = ("wmem_default", "wmem_max", "rmem_default", "rmem_max")


@dataclass(frozen=True)
class Nic:
    name: str
    operstate: str | None
    duplex: str | None
    speed_mbps: int | None


@dataclass(frozen=True)
class Snapshot:
    """Counters at one moment; ``udp``/``udp6`` keys are the kernel's names (``SndbufErrors``...)."""

    taken: float
    udp: dict[str, int]
    udp6: dict[str, int]
    sysctl: dict[str, int | None]
    nics: list[Nic] = field(default_factory=list)
    bind_send_errors: dict[str, int] | None = None  # UDP4SendErr/UDP6SendErr from the statistics channel
    bind_version: str | None = None  # named's version, from the statistics channel

    @property
    def sndbuf_errors(self) -> int:
        return self.udp.get("SndbufErrors", 0) + self.udp6.get("SndbufErrors", 0)


def read_snmp(path: Path) -> dict[str, int]:
    """The ``Udp:`` header/value line pair of /proc/net/snmp."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); point --proc at a proc root (default /proc)") from None
    rows = [line.split() for line in lines if line.startswith("Udp:")]
    if len(rows) < 2:
        raise InputError(f"{path}: no 'Udp:' lines; is this /proc/net/snmp?")
    return {name: int(value) for name, value in zip(rows[0][1:], rows[1][1:], strict=False) if name in UDP_FIELDS}


def read_snmp6(path: Path) -> dict[str, int]:
    """``Udp6SndbufErrors  N`` lines of /proc/net/snmp6; absent without IPv6."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("Udp6") and parts[0][4:] in UDP_FIELDS:
            found[parts[0][4:]] = int(parts[1])
    return found


def read_nics(sys_root: Path) -> list[Nic]:
    nics = []
    for device in sorted((sys_root / "class" / "net").glob("*")):
        speed = _read(device / "speed")
        nics.append(
            Nic(
                device.name,
                _read(device / "operstate"),
                _read(device / "duplex"),
                int(speed) if speed and speed.lstrip("-").isdigit() and int(speed) > 0 else None,
            )
        )
    return nics


def take(proc: Path, sys_root: Path, stats: Stats | None = None) -> Snapshot:
    sysctl = {}
    for name in SYSCTLS:
        value = _read(proc / "sys" / "net" / "core" / name)
        sysctl[name] = int(value) if value and value.isdigit() else None
    return Snapshot(
        taken=time.time(),
        udp=read_snmp(proc / "net" / "snmp"),
        udp6=read_snmp6(proc / "net" / "snmp6"),
        sysctl=sysctl,
        nics=read_nics(sys_root),
        bind_send_errors=stats.send_errors if stats else None,
        bind_version=stats.version if stats else None,
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # EINVAL for duplex of a down or virtual device, ENOENT in a container
        return None

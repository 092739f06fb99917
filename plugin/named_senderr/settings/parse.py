"""Typed, validated settings: one frozen dataclass per command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from named_senderr.errors import ConfigError

FORMATS = ("ecs", "flat")


@dataclass(frozen=True)
class ParseConfig:
    """Settings of ``named-senderr parse``."""

    inputs: tuple[str, ...] = ("-",)
    format: str = "ecs"
    timezone: str | None = None  # None: the machine's local zone
    host: str | None = None  # host.name for lines that carry none
    stats: bool = False
    rejects: Path | None = None
    progress: bool = True
    client_ip: str | None = None  # privacy: truncate:/24,/56 or hash:KEYFILE
    qname: str | None = None  # privacy: drop, hash[:KEYFILE] or suffix:N
    rollup: float | None = None  # seconds per rollup window; None: every event
    count_lines: bool = True  # lines and undecodable lines read; the command line counts them only for --stats

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if not self.inputs:
            raise ConfigError("no input given; name files, or '-' for stdin")

"""Secrets are never values in a setting, only the name of the variable or the file that holds one."""

from __future__ import annotations

import os
from pathlib import Path

from named_senderr.errors import ConfigError


def read_secret(env: str | None, file: Path | None, what: str, sink: str) -> str | None:
    """The secret named by ``env`` or ``file``; the message on failure names where, never the value."""
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{sink}: {what}_env names {env}, which is not set; export {env} or use {what}_file")
        return value
    if file:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{sink}: {what}_file {file}: {exc.strerror}; make it readable by this user") from None
        if not value:
            raise ConfigError(f"{sink}: {what}_file {file} is empty; write the {what} into it")
        return value
    return None

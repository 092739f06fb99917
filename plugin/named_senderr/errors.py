"""One exception tree: every error named-senderr raises on purpose derives from here."""

from __future__ import annotations


class NamedSenderrError(Exception):
    """Base class; the CLI prints these as one line and exits non-zero."""


class PatternError(NamedSenderrError):
    """The Grok files are missing, malformed or refer to an undefined pattern."""


class ConfigError(NamedSenderrError):
    """A setting is invalid; the message names the setting and the fix."""


class InputError(NamedSenderrError):
    """An input file cannot be opened or read."""

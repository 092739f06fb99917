"""Privacy stage: client addresses and query names reduced before anything leaves the host.

Multi-team fleets share one store; the team running BIND may not hand out its
clients' addresses or what they looked up. The stage rewrites the Event itself
(address, qname and the message/original lines that quote them), so every
rendering (ECS, flat, Loki metadata) and every sink sees only the reduced form.

``--client-ip truncate:/24,/56``  the client's network (host bits zeroed)
``--client-ip hash:KEYFILE``      HMAC-SHA256 with the key in KEYFILE (or ``hash:env:VAR``);
                                  the result is a stable ULA-looking IPv6 ``fdXX:...`` so
                                  ip-typed fields (Elasticsearch ``client.ip``) still take it
``--qname drop|hash|suffix:N``    removed, keyed hash (the same key), or the last N labels
The key is read once and held only here: no message, repr or event carries it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.event import Event
from named_senderr.normalize.network import network_text

REDACTED = "redacted"


@dataclass(frozen=True)
class PrivacyConfig:
    """The two options as given on the command line or in the TOML file; None leaves a field as logged."""

    client_ip: str | None = None
    qname: str | None = None


@dataclass(frozen=True)
class Privacy:
    """The compiled stage: ``apply(event)`` rewrites in place and returns the event."""

    prefixes: tuple[int, int] | None = None  # IPv4, IPv6 network kept by truncate
    hash_ip: bool = False
    qname_mode: str | None = None  # drop, hash, suffix
    qname_labels: int = 0
    key: bytes = field(default=b"", repr=False)

    def apply(self, event: Event) -> Event:
        if event.client_ip is not None and (self.hash_ip or self.prefixes is not None):
            new = self._address(event.client_ip)
            old = event.client_ip + ("%" + event.scope if event.scope else "")
            event.message = event.message.replace(old + "#", new + "#")
            event.original = event.original.replace(old + "#", new + "#")
            event.client_ip, event.scope = new, None
        if event.qname is not None and self.qname_mode is not None:
            new_qname = self._qname(event.qname)
            pattern = re.compile(r"(?<![\w.-])" + re.escape(event.qname) + r"(?![\w-])")
            shown = new_qname if new_qname is not None else REDACTED
            event.message = pattern.sub(shown, event.message)
            event.original = pattern.sub(shown, event.original)
            event.qname = new_qname
        return event

    def _address(self, address: str) -> str:
        if self.hash_ip:
            digest = keyed_digest(self.key, address.encode())
            return str(ipaddress.IPv6Address(b"\xfd" + digest[:15]))
        assert self.prefixes is not None  # apply() calls this only to hash or to truncate
        return network_text(address, *self.prefixes)

    def _qname(self, qname: str) -> str | None:
        if self.qname_mode == "drop":
            return None
        if self.qname_mode == "hash":
            return keyed_digest(self.key, qname.lower().encode()).hex()[:32]
        labels = qname.rstrip(".").split(".")
        return ".".join(labels[-self.qname_labels :])


def keyed_digest(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data``; hashlib loads OpenSSL, imported here so that runs that never hash skip it."""
    import hashlib
    import hmac

    return hmac.new(key, data, hashlib.sha256).digest()


def compile_privacy(config: PrivacyConfig, env: dict[str, str] | None = None) -> Callable[[Event], Event] | None:
    """The stage for ``config``, or None when it changes nothing; errors name the option and the fix."""
    if config.client_ip is None and config.qname is None:
        return None
    env = dict(os.environ) if env is None else env
    kwargs: dict = {}
    key_spec: str | None = None
    if config.client_ip is not None:
        mode, _, arg = config.client_ip.partition(":")
        if mode == "truncate":
            kwargs["prefixes"] = _prefixes(arg)
        elif mode == "hash" and arg:
            kwargs["hash_ip"], key_spec = True, arg
        else:
            raise ConfigError(
                f"--client-ip {config.client_ip!r}: use truncate:/24,/56 or hash:KEYFILE (or hash:env:VARIABLE)"
            )
    if config.qname is not None:
        mode, _, arg = config.qname.partition(":")
        if mode == "drop" and not arg:
            kwargs["qname_mode"] = "drop"
        elif mode == "hash":
            kwargs["qname_mode"] = "hash"
            key_spec = arg or key_spec
            if key_spec is None:
                raise ConfigError("--qname hash needs a key: hash:KEYFILE, or --client-ip hash:KEYFILE to share it")
        elif mode == "suffix" and arg.isdigit() and int(arg) >= 1:
            kwargs["qname_mode"], kwargs["qname_labels"] = "suffix", int(arg)
        else:
            raise ConfigError(f"--qname {config.qname!r}: use drop, hash[:KEYFILE] or suffix:N (N >= 1 labels kept)")
    if key_spec is not None:
        kwargs["key"] = read_key(key_spec, env)
    return Privacy(**kwargs).apply


def read_key(spec: str, env: dict[str, str]) -> bytes:
    """The HMAC key from ``env:VARIABLE`` or a file; messages name where, never the key."""
    if spec.startswith("env:"):
        name = spec[4:]
        text = env.get(name, "").strip()
        if not text:
            raise ConfigError(f"hash key: environment variable {name} is unset or empty; export it or use a key file")
        return text.encode()
    try:
        value = Path(spec).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"hash key file {spec}: cannot read ({exc.strerror}); check the path and permissions"
        ) from None
    if len(value) < 16:
        raise ConfigError(f"hash key file {spec}: key shorter than 16 bytes; use e.g. `openssl rand -hex 32 > {spec}`")
    return value


def _prefixes(arg: str) -> tuple[int, int]:
    parts = [p.strip().lstrip("/") for p in arg.split(",")] if arg else ["24", "56"]
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) > 32 or int(parts[1]) > 128:
        raise ConfigError(f"--client-ip truncate:{arg}: give the IPv4 and IPv6 prefixes, e.g. truncate:/24,/56")
    return int(parts[0]), int(parts[1])

"""A sink's secrets: read once at start, sent as one header, and removed from anything a server says.

Secrets come from the environment variable or file the configuration names,
never from the configuration itself. A server, or a proxy in front of it, may
quote the request's headers in an answer (a 401, a 400, a 500 page, a bulk
item's reason); every text made of an answer goes through
``Credentials.redact`` before it is logged, raised or written to a file. It
knows every form in which the sink sends a secret, and how a server may
re-encode it: the password, ``user:password`` and its base64, an API key and
its ``id:key`` decoding, a bearer token, each as is, URL-encoded, JSON-, HTML-
or Python-escaped.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from named_senderr.settings.secrets import read_secret
from named_senderr.settings.ship import AuthConfig

REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class Credentials:
    """The headers that authenticate a sink, and the pattern of every form of its secrets."""

    headers: dict[str, str] = field(default_factory=dict, repr=False)
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, headers: dict[str, str], secrets: list[str]) -> Credentials:
        forms = {form for secret in secrets for form in _spellings(secret) if form}
        # Longest first: at each position the whole of a longer form is taken, never a piece of it.
        pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        return cls(headers, re.compile(pattern) if pattern else None)

    def redact(self, text: str) -> str:
        """``text`` with every form of every secret replaced by [REDACTED]."""
        return self._pattern.sub(REDACTED, text) if self._pattern else text


NO_CREDENTIALS = Credentials()


def read_credentials(auth: AuthConfig, sink: str) -> Credentials:
    """The Authorization header ``auth`` asks for, with what it exposes: one scheme at most (ship_config checks)."""
    password = read_secret(auth.password_env, auth.password_file, "password", sink)
    if auth.username and password is not None:
        pair = f"{auth.username}:{password}"
        token = _b64(pair)
        return Credentials.of({"Authorization": f"Basic {token}"}, [password, pair, token, token.rstrip("=")])
    api_key = read_secret(auth.api_key_env, auth.api_key_file, "api_key", sink)
    if api_key is not None:
        return Credentials.of({"Authorization": f"ApiKey {api_key}"}, [api_key, *_api_key_parts(api_key)])
    bearer = read_secret(auth.bearer_token_env, auth.bearer_token_file, "bearer_token", sink)
    if bearer is not None:
        return Credentials.of({"Authorization": f"Bearer {bearer}"}, [bearer])
    return NO_CREDENTIALS


def _api_key_parts(api_key: str) -> list[str]:
    """An Elasticsearch API key is base64 of ``id:key``; given as ``id:key`` it is that pair. The key is secret."""
    try:
        decoded = base64.b64decode(api_key, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    pair = decoded if ":" in decoded else api_key
    if ":" not in pair:
        return []
    return [pair, _b64(pair), pair.partition(":")[2]]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _spellings(secret: str) -> set[str]:
    """How ``secret`` may appear in a server's text: as sent, URL-encoded, or escaped in JSON, HTML or a repr."""
    return {
        secret,
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
        repr(secret)[1:-1],
    }

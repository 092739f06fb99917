"""A fault-injecting HTTP server on loopback: scripted answers, or a proxy to a real server.

Real servers cannot be made to answer 429 forty times in a row, to refuse a
body as too large on demand, or to cut a connection halfway through a
request. This server does, request by request, as a test's ``plan`` says;
``Forward`` passes a request on to a real server so the end state can be
checked where a user would check it.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ssl
import subprocess
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import orjson


@dataclass
class Request:
    """What the client sent, with the body decompressed."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def ndjson(self) -> list[dict]:
        return [orjson.loads(line) for line in self.body.splitlines() if line]


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Forward:
    """Pass the request on to the real server at ``upstream`` and answer what it answers."""

    upstream: str


Action = Reply | Forward
Plan = Callable[[Request, int], Action]  # (request, its 0-based number) -> what to do


def holding_bulk(gate: threading.Event, upstream: str, timeout: float) -> Plan:
    """Everything passed on to ``upstream``, each ``_bulk`` request only once ``gate`` is set (or ``timeout``)."""

    def plan(request: Request, number: int) -> Action:
        if request.path.split("?", 1)[0].endswith("/_bulk"):  # the path carries a query string
            gate.wait(timeout)
        return Forward(upstream)

    return plan


class FaultServer:
    """``with FaultServer(plan) as server:`` ... ``server.url``; ``server.requests`` lists what came.

    Requests whose 0-based number is in ``cut`` are not answered: the server reads half the body
    and closes the connection, as a crashing server or a dropped link would. Requests numbered in
    ``lose_answer`` are carried out (planned, forwarded) but the answer never reaches the client,
    as when a link drops after the server stored a batch. ``record=False`` keeps nothing (for
    benchmarks: the plan then sees the raw, compressed body). With ``tls`` the
    server speaks HTTPS (a failed handshake is just a closed connection on its side).
    """

    def __init__(
        self,
        plan: Plan,
        cut: frozenset[int] = frozenset(),
        tls: ssl.SSLContext | None = None,
        lose_answer: frozenset[int] = frozenset(),
        record: bool = True,
    ) -> None:
        self.plan = plan
        self.record = record
        self.cut = cut
        self.lose_answer = lose_answer
        self.cuts = 0
        self._count = 0
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _number(self) -> int:
        with self._lock:
            self._count += 1
            return self._count - 1


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            """Quiet: tests read ``server.requests`` instead."""

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            headers = {k.lower(): v for k, v in self.headers.items()}
            number = server._number()
            if number in server.cut:
                self.rfile.read(length // 2)
                server.cuts += 1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            raw = body = self.rfile.read(length)
            if server.record and headers.get("content-encoding") == "gzip":
                body = zlib.decompress(raw, wbits=47)
            request = Request(self.command, self.path, headers, body)
            if server.record:
                server.requests.append(request)
            action = server.plan(request, number)
            if isinstance(action, Forward):
                action = _forward(action.upstream, self.command, self.path, headers, raw)
            if number in server.lose_answer:
                server.cuts += 1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(action.status)
            for name, value in action.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(action.body)))
            self.end_headers()
            self.wfile.write(action.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    return Handler


def _forward(upstream: str, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
    parts = urlsplit(upstream)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        dropped = ("host", "connection", "content-length", "accept-encoding")  # answers go back uncompressed
        keep = {k: v for k, v in headers.items() if k not in dropped}
        connection.request(method, path, body=body, headers=keep)
        response = connection.getresponse()
        content_type = response.getheader("Content-Type", "application/json")
        return Reply(response.status, response.read(), {"Content-Type": content_type})
    finally:
        connection.close()


def bulk_answer(statuses: list[int], reason: str = "rejected") -> Reply:
    """A ``_bulk`` answer with one item per status, as Elasticsearch words it."""
    items = []
    for status in statuses:
        result: dict = {"status": status}
        if status >= 300:
            kind = "version_conflict_engine_exception" if status == 409 else "es_rejected_execution_exception"
            result["error"] = {"type": kind if status in (409, 429) else "document_parsing_exception", "reason": reason}
        items.append({"create": result})
    body = orjson.dumps({"errors": any(s >= 300 for s in statuses), "items": items})
    return Reply(200, body, {"Content-Type": "application/json"})


def echoed_headers(request: Request) -> str:
    """The request's headers as a careless server or proxy quotes them: as sent, URL-encoded, Basic decoded."""
    auth = request.headers.get("authorization", "")
    try:
        decoded = base64.b64decode(auth.partition(" ")[2], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    return f"refused request with headers {request.headers!r} (auth {quote(auth, safe='')}, credentials {decoded})"


def echoing(status: int) -> Plan:
    """Answer every request ``status`` with an Elasticsearch-style error that quotes the request's headers;
    ``status`` 200 answers ``_bulk`` with every item refused (400) for that reason."""

    def plan(request: Request, n: int) -> Reply:
        if status == 200:
            return bulk_answer([400] * (len(request.ndjson) // 2), echoed_headers(request))
        body = orjson.dumps({"error": {"type": "security_exception", "reason": echoed_headers(request)}})
        return Reply(status, body, {"Content-Type": "application/json"})

    return plan


def make_pki(directory: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (``client.pem``), made with openssl."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    for name, san in (("server", "IP:127.0.0.1"), ("client", "DNS:client")):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return directory

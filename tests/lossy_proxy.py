"""A lossy network between the tool and a simulator, for tests: an HTTP proxy on loopback that, by seed, drops some
requests before they reach the simulator and forwards others but throws their answers away (it closes the
client's connection either way, as a cut network does), and counts what it did per SOAP method and per /folder
verb. It never disturbs the login family, so the tool can always log in. With ``busy=N`` it first answers N SOAP
requests with HTTP 503, the login family included, as the reverse proxy in front of an overloaded vCenter does.

The client side speaks plain HTTP (the tool's ``GOVC_URL=http://127.0.0.1:<port>``); the proxy speaks TLS to the
simulator with the simulator's CA file. Decisions depend only on the seed, the method and how many requests of
that method came before (``decide``), not on timing, so a seed loses the same share of each method in every run.

Bounded: loopback only, at most ``MAX_CONNECTIONS`` client connections at once (more are refused), a timeout on
every socket, and the server stops by itself after ``lifetime`` seconds if the test forgets to stop it.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Never disturbed: without them the tool cannot start (and a dropped Logout is nobody's concern).
LOGIN_FAMILY = frozenset({
    "/sdk GET",  # pyVmomi's version discovery (vimServiceVersions.xml, vimService.wsdl)
    "RetrieveServiceContent", "Login", "LoginByToken", "LoginExtensionByCertificate", "Logout",
})  # fmt: skip
MAX_CONNECTIONS = 64
SOCKET_TIMEOUT = 30.0
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "host"})

FORWARDED, DROPPED, ANSWER_LOST, BUSY = "forwarded", "dropped", "answer_lost", "busy"
_METHOD = re.compile(rb"<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)")


def soap_method(body: bytes) -> str:
    found = _METHOD.search(body)
    return found.group(1).decode() if found else "?"


def decide(seed: int, rate: float, kind: str, nth: int) -> str:
    """The fate of the ``nth`` request of ``kind``: disturbed with probability ``rate``, half of those dropped
    before the simulator sees them, half forwarded with their answer thrown away."""
    if kind in LOGIN_FAMILY or rate <= 0:
        return FORWARDED
    draw = int.from_bytes(hashlib.sha256(f"{seed}:{kind}:{nth}".encode()).digest()[:8], "big") / 2**64
    if draw < rate / 2:
        return DROPPED
    return ANSWER_LOST if draw < rate else FORWARDED


@dataclass
class Tally:
    """What the proxy did, per kind (a SOAP method, or ``/folder PUT`` …)."""

    counts: Counter

    def of(self, kind: str, fate: str) -> int:
        return self.counts[(kind, fate)]

    def lost(self) -> dict[str, int]:
        """Kind -> requests that were not answered (dropped or answer lost)."""
        out: Counter = Counter()
        for (kind, fate), n in self.counts.items():
            if fate != FORWARDED:
                out[kind] += n
        return dict(out)


class LossyProxy:
    """``with LossyProxy(sim, rate=0.05, seed=7) as proxy:`` then point the tool at ``proxy.url``."""

    def __init__(self, upstream: Any, rate: float, seed: int, lifetime: float = 900.0, busy: int = 0) -> None:
        parts = urlsplit(upstream.url)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.upstream_tls = parts.scheme == "https"
        self.ca_file = getattr(upstream, "ca_file", None)
        self.rate, self.seed, self.lifetime, self.busy = rate, seed, lifetime, busy
        self.url = ""
        self._lock = threading.Lock()
        self._seen: Counter = Counter()
        self._counts: Counter = Counter()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._server: ThreadingHTTPServer | None = None
        self._stopper: threading.Timer | None = None

    # -- lifecycle

    def __enter__(self) -> LossyProxy:
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="lossy-proxy", daemon=True).start()
        self._stopper = threading.Timer(self.lifetime, self.stop)
        self._stopper.daemon = True
        self._stopper.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/sdk"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._stopper is not None:
            self._stopper.cancel()

    @contextmanager
    def clean(self) -> Iterator[None]:
        """A stretch with nothing disturbed (a clean re-run); the decisions go on where they stopped after it."""
        rate, self.rate = self.rate, 0.0
        try:
            yield
        finally:
            self.rate = rate

    def tally(self) -> Tally:
        with self._lock:
            return Tally(Counter(self._counts))

    def reset_tally(self) -> Tally:
        with self._lock:
            tally, self._counts = Tally(Counter(self._counts)), Counter()
            return tally

    # -- one request

    def fate(self, kind: str) -> str:
        with self._lock:
            if self.busy > 0 and not kind.startswith("/"):
                self.busy -= 1
                self._counts[(kind, BUSY)] += 1
                return BUSY
            nth = self._seen[kind]
            self._seen[kind] += 1
            fate = decide(self.seed, self.rate, kind, nth)
            self._counts[(kind, fate)] += 1
            return fate

    def upstream(self) -> http.client.HTTPConnection:
        if not self.upstream_tls:
            return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=SOCKET_TIMEOUT)
        context = ssl.create_default_context(cafile=self.ca_file)
        return http.client.HTTPSConnection(
            self.upstream_host, self.upstream_port, timeout=SOCKET_TIMEOUT, context=context
        )


class _Handler(BaseHTTPRequestHandler):
    proxy: LossyProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as pyVmomi's and requests' pools expect
    timeout = SOCKET_TIMEOUT

    def setup(self) -> None:
        self.admitted = self.proxy._slots.acquire(blocking=False)
        super().setup()

    def finish(self) -> None:
        super().finish()
        if self.admitted:
            self.proxy._slots.release()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def _relay(self) -> None:
        if not self.admitted:
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        area = "/sdk" if path.startswith("/sdk") else "/folder"
        kind = soap_method(body) if area == "/sdk" and self.command == "POST" else f"{area} {self.command}"
        fate = self.proxy.fate(kind)
        if fate == BUSY:
            self.send_response(503, "Service Unavailable")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fate == DROPPED:
            self.close_connection = True  # the request never reaches the simulator
            return
        status, reason, headers, answer = self._forward(body)
        if fate == ANSWER_LOST:
            self.close_connection = True  # it reached the simulator; its answer is thrown away
            return
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        # A connection of its own per request: a kept-alive one the simulator closed would tempt a re-send, and
        # the proxy must never duplicate a request itself.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = self.proxy.upstream()
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

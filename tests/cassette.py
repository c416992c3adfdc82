"""vcr.py cassettes for vSphere traffic: record from the live vcsim harness, replay without a network.

- pyvmomi's ``SoapAdapter`` and ``pyVim.connect`` import ``HTTPSConnection``/``HTTPConnection`` by name, so
  they are patched through ``custom_patches``; ``requests`` (datastore ``/folder`` PUT/GET) is patched by
  vcr itself. Create the ServiceInstance *inside* the cassette: the stub picks its connection class then.
- Matching: SOAP calls (all ``POST /sdk``) on the operation and its key arguments (``_this`` and every
  other managed object reference, ``pathSet``, ``version``); ``/folder`` on method, path and ``dsName``.
  Never on host/port (vcsim's port changes per run) nor raw bytes.
- Scrubbing at record time: Login ``<password>``, ``vmware_soap_session``/``vmware_cgi_ticket`` cookie
  values (replaced by placeholders, headers kept), session keys and tickets in SOAP answers, Basic auth,
  uploaded bodies (``sha256:<hex>``) and registered secrets (``*`` of the same length, so a downloaded
  ISO stays parseable). The same scrubbing runs on live requests before matching, so replay matches.
- ``/_harness`` control calls are never recorded (they pass through to the live harness).

Mode: ``CASSETTE_MODE=record`` re-records (needs the live harness), anything else replays.
Cassettes live in ``cassettes/`` (override with ``CASSETTE_DIR``).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import html
import json
import os
import re
import socket
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pyVim.connect as pyvim_connect
import vcr
import yaml
from pyVmomi import SoapAdapter
from vcr.record_mode import RecordMode
from vcr.request import Request as VcrRequest
from vcr.stubs import VCRHTTPConnection, VCRHTTPSConnection
from vsphere_harness import DEFAULT_USERNAME

REPO = Path(__file__).resolve().parents[1]
RECORD = "record"
REPLAY = "replay"
RECORDED_HOST = "vcsim.test"
PASSWORD_PLACEHOLDER = "SCRUBBED"
SESSION_PLACEHOLDER = "scrubbed-session-{n}"
TICKET_PLACEHOLDER = "scrubbed-ticket-{n}"
_PLACEHOLDER_RE = re.compile(r"^scrubbed-(session|ticket)-\d+$")

CUSTOM_PATCHES = (
    (SoapAdapter, "HTTPSConnection", VCRHTTPSConnection),
    (SoapAdapter, "HTTPConnection", VCRHTTPConnection),
    (pyvim_connect, "HTTPSConnection", VCRHTTPSConnection),  # GET /sdk/vimServiceVersions.xml
    (pyvim_connect, "HTTPConnection", VCRHTTPConnection),
)


def cassette_dir() -> Path:
    return Path(os.environ.get("CASSETTE_DIR") or REPO / "cassettes")


def cassette_mode() -> str:
    """``record`` when ``CASSETTE_MODE=record``, else ``replay``."""
    return RECORD if os.environ.get("CASSETTE_MODE", "").strip().lower() == RECORD else REPLAY


# ---------------------------------------------------------------------------------------------------------
# Matching


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def soap_signature(body: bytes | str | None) -> tuple[Any, ...]:
    """What identifies a SOAP call for replay: operation, managed object references (``_this`` first,
    in document order), ``pathSet`` entries and ``version``. Falls back to a digest of the body."""
    if body is None:
        return ("<empty>",)
    raw = body.encode() if isinstance(body, str) else bytes(body)
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return ("<unparsed>", hashlib.sha256(raw).hexdigest())
    bodies = [el for el in root if _local(el.tag) == "Body"]
    if not bodies or len(bodies[0]) == 0:
        return ("<no-body>", hashlib.sha256(raw).hexdigest())
    op = bodies[0][0]
    refs, paths, version = [], [], None
    for el in op.iter():
        name = _local(el.tag)
        if "type" in el.attrib:  # a plain (not xsi:) type attribute marks a ManagedObjectReference
            refs.append((name, el.attrib["type"], (el.text or "").strip()))
        elif name == "pathSet":
            paths.append((el.text or "").strip())
        elif name == "version" and el is not op:
            version = (el.text or "").strip()
    return (_local(op.tag), tuple(refs), tuple(paths), version)


def _soap_path(path: str) -> bool:
    return path.endswith("/sdk") or path.endswith("/sdk/vimService")


def vsphere_matcher(r1: Any, r2: Any) -> None:
    """vcr matcher: raises AssertionError saying what differs."""
    if r1.method != r2.method:
        raise AssertionError(f"method {r1.method} != {r2.method}")
    if r1.path != r2.path:
        raise AssertionError(f"path {r1.path} != {r2.path}")
    if r1.method == "POST" and _soap_path(r1.path):
        s1, s2 = soap_signature(r1.body), soap_signature(r2.body)
        if s1 != s2:
            raise AssertionError(f"SOAP call {s1} != {s2}")
    elif r1.path.startswith("/folder"):
        d1 = parse_qs(urlsplit(r1.uri).query).get("dsName")
        d2 = parse_qs(urlsplit(r2.uri).query).get("dsName")
        if d1 != d2:
            raise AssertionError(f"dsName {d1} != {d2}")


# ---------------------------------------------------------------------------------------------------------
# Scrubbing

_COOKIE_RE = re.compile(r'(vmware_soap_session|vmware_cgi_ticket)=("?)([^";,\s]+)')
_PASSWORD_RE = re.compile(rb"(<password(?:\s[^>]*)?>)(.*?)(</password>)", re.S)  # pyvmomi adds versionId=
_TICKET_RES = (
    re.compile(rb"(<AcquireCloneTicketResponse[^>]*>\s*<returnval>)([^<]+)(</returnval>)"),
    re.compile(rb"(<AcquireGenericServiceTicketResponse[^>]*>.*?<id>)([^<]+)(</id>)", re.S),
)


def secret_forms(secret: str) -> list[str]:
    """A secret as a drive carries it: as is, JSON-escaped (meta_data.json's admin_pass), and the MD5 in the
    checksum file of CloudStack's Windows guests (hex, padded, then Java BigInteger's unpadded form: masking
    the longer first). An unsalted MD5 of a password is as good as the password to a dictionary attack. And as
    guestinfo encodes a value: base64, gzip+base64 (a value that embeds it is scrubbed whole: ``guestinfo_value``)."""
    md5 = hashlib.md5(secret.encode()).hexdigest()
    forms = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], md5, f"{int(md5, 16):x}"]
    forms += encoded_forms(secret)
    return list(dict.fromkeys(forms))


def encoded_forms(secret: str) -> list[str]:
    """base64 and gzip+base64 of the secret alone, as guestinfo encodes a value (esxi_configdrive.guestinfo)."""
    from esxi_configdrive.guestinfo import gzip_bytes

    raw = secret.encode()
    return [base64.b64encode(raw).decode(), base64.b64encode(gzip_bytes(raw)).decode()]


# An extraConfig entry of a guestinfo key in a SOAP body (a ReconfigVM's spec, a read of config.extraConfig)
_GUESTINFO_RE = re.compile(rb"(<key>guestinfo\.[A-Za-z0-9._-]+</key>\s*<value[^>]*>)(.*?)(</value>)", re.S)
_BASE64_RUN_RE = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")
_BASE64_LINE_RE = re.compile(rb"[A-Za-z0-9+/]{4,}={0,2}")
# A base64 text as a MIME part's body (lines wrapped at 76 columns) or a value within a line
_BASE64_SPAN_RE = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}(?:\r?\n[A-Za-z0-9+/]{4,}={0,2})*")
_NEWLINE_RE = re.compile(rb"(\r?\n)")


def reveals(value: bytes, secrets: Iterable[str], depth: int = 4) -> bool:
    """Whether a secret can be read out of ``value`` by undoing the encodings guestinfo and cloud-init's MIME
    messages use (base64, gzip, nested), as far as ``depth`` layers: a value the tool encoded still holds it."""
    raw = html.unescape(value.decode("utf-8")).encode() if value.isascii() else value  # XML text, else bytes
    if any(s.encode() in raw for s in secrets if s):
        return True
    if depth == 0:
        return False
    layers: list[bytes] = []
    with contextlib.suppress(OSError, EOFError, zlib.error):
        layers.append(gzip.decompress(raw))
    for block in _base64_blocks(raw):
        with contextlib.suppress(ValueError):
            layers.append(base64.b64decode(block + b"=" * (-len(block) % 4)))
    return any(reveals(layer, secrets, depth - 1) for layer in layers)


def _base64_blocks(raw: bytes) -> list[bytes]:
    """Runs of consecutive base64 lines (a MIME part's body is wrapped at 76 columns), joined; and the runs
    within a line."""
    blocks: list[bytes] = []
    run: list[bytes] = []
    for line in [*raw.splitlines(), b""]:
        if _BASE64_LINE_RE.fullmatch(line.strip()):
            run.append(line.strip())
            continue
        if run:
            blocks.append(b"".join(run))
            run = []
        blocks += _BASE64_RUN_RE.findall(line)
    return blocks


@dataclass
class Scrubber:
    """Record-time scrubbing; also applied to live requests before matching (vcr does that)."""

    secrets: list[str] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)  # real cookie/ticket value -> placeholder

    def register_secret(self, secret: str) -> None:
        if not secret:
            return
        for form in secret_forms(secret):
            if form and form not in self.secrets:
                self.secrets.append(form)

    # -- helpers -----------------------------------------------------------------------------------------

    def _token(self, value: str, kind: str = "session") -> str:
        if _PLACEHOLDER_RE.match(value):
            return value
        if value not in self._tokens:
            n = 1 + sum(1 for v in self._tokens.values() if v.startswith(f"scrubbed-{kind}-"))
            self._tokens[value] = (SESSION_PLACEHOLDER if kind == "session" else TICKET_PLACEHOLDER).format(n=n)
        return self._tokens[value]

    def _cookie(self, header: str) -> str:
        def repl(m: re.Match[str]) -> str:
            kind = "session" if m.group(1) == "vmware_soap_session" else "ticket"
            return f"{m.group(1)}={m.group(2)}{self._token(m.group(3), kind)}"

        return _COOKIE_RE.sub(repl, header)

    def _guestinfo(self, data: bytes) -> bytes:
        """A guestinfo value that holds a secret under its encodings goes whole (vendor data with a password)."""
        if b"guestinfo." not in data or not self.secrets:
            return data
        return _GUESTINFO_RE.sub(
            lambda m: (
                m.group(1)
                + (PASSWORD_PLACEHOLDER.encode() if reveals(m.group(2), self.secrets) else m.group(2))
                + m.group(3)
            ),
            data,
        )

    def _mask(self, data: bytes, depth: int = 3) -> bytes:
        data = self._guestinfo(data)
        for secret in self.secrets:
            raw = secret.encode()
            data = data.replace(raw, b"*" * len(raw))
        return self._base64_masked(data, depth) if depth and self.secrets else data

    def _base64_masked(self, data: bytes, depth: int) -> bytes:
        """A secret inside base64 text (a NoCloud seed's vendor-data MIME part, in an ISO downloaded whole) masked
        where it lies: decoded, masked, encoded again to the same length and line breaks, so an ISO stays one."""

        def masked(m: re.Match[bytes]) -> bytes:
            span = m.group(0)
            compact = b"".join(_NEWLINE_RE.split(span)[::2])
            try:
                decoded = base64.b64decode(compact, validate=True)
            except ValueError:
                return span
            inner = self._mask(decoded, depth - 1)
            if inner == decoded:
                return span
            encoded, pieces, at = base64.b64encode(inner), [], 0
            for piece in _NEWLINE_RE.split(span):
                if _NEWLINE_RE.fullmatch(piece):
                    pieces.append(piece)
                else:
                    pieces.append(encoded[at : at + len(piece)])
                    at += len(piece)
            return b"".join(pieces)

        return _BASE64_SPAN_RE.sub(masked, data)

    def _tokens_in_body(self, data: bytes) -> bytes:
        for real, placeholder in self._tokens.items():
            data = data.replace(real.encode(), placeholder.encode())
        return data

    # -- vcr hooks ---------------------------------------------------------------------------------------

    def request(self, request: Any) -> Any:
        parts = urlsplit(request.uri)
        if parts.path.startswith("/_harness"):
            return None  # control API: never recorded, always live
        uri = urlunsplit((parts.scheme, RECORDED_HOST, parts.path, parts.query, parts.fragment))
        headers = dict(request.headers)
        for name in list(headers):
            if name.lower() == "cookie":
                headers[name] = self._cookie(headers[name])
            elif name.lower() == "authorization":
                headers[name] = PASSWORD_PLACEHOLDER
        body = request.body_bytes  # file and iterator bodies materialized
        if isinstance(body, str):
            body = body.encode()
        if body:
            if request.method in ("PUT", "POST") and parts.path.startswith("/folder"):
                body = b"sha256:" + hashlib.sha256(body).hexdigest().encode()
            else:
                body = _PASSWORD_RE.sub(rb"\1" + PASSWORD_PLACEHOLDER.encode() + rb"\3", body)
                body = self._mask(self._tokens_in_body(body))
        return VcrRequest(request.method, uri, body, headers)

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        headers = response.get("headers", {})
        for name in list(headers):
            if name.lower() == "set-cookie":
                headers[name] = [self._cookie(v) for v in headers[name]]
        body = response.get("body", {}).get("string")
        if isinstance(body, str):
            body = body.encode()
        if body:
            new = body
            for pattern in _TICKET_RES:
                new = pattern.sub(
                    lambda m: m.group(1) + self._token(m.group(2).decode(), "ticket").encode() + m.group(3), new
                )
            new = self._mask(self._tokens_in_body(new))
            if new != body:
                response["body"]["string"] = new
                for name in list(headers):
                    if name.lower() == "content-length":
                        headers[name] = [str(len(new))]
        return response


# ---------------------------------------------------------------------------------------------------------
# Cassettes


@dataclass(frozen=True)
class ReplayTarget:
    """Stands in for the harness during replay: no process, nothing listens at this URL."""

    url: str = "https://vcsim.test/sdk"
    username: str = DEFAULT_USERNAME
    password: str = "replay-password"  # matched nowhere: Login passwords are scrubbed on both sides
    ca_file: str | None = None


@dataclass
class Recording:
    """What ``use_cassette`` yields."""

    name: str
    mode: str
    path: Path
    scrubber: Scrubber
    cassette: Any = None

    @property
    def recording(self) -> bool:
        return self.mode == RECORD

    def register_secret(self, secret: str) -> None:
        """Scrub this string from everything recorded from now on (same-length ``*``)."""
        self.scrubber.register_secret(secret)


def _vcr() -> vcr.VCR:
    v = vcr.VCR(serializer="yaml", decode_compressed_response=True)
    v.register_matcher("vsphere", vsphere_matcher)
    return v


@contextlib.contextmanager
def use_cassette(
    name: str,
    mode: str | None = None,
    *,
    secrets: Iterable[str] = (),
    directory: Path | None = None,
    require_all_played: bool = True,
) -> Iterator[Recording]:
    """Record (``mode="record"``) or replay (``"replay"``; default: ``cassette_mode()``) ``name``.yaml.

    Recording starts from an empty file. Replaying raises vcr's CannotOverwriteExistingCassetteException
    on an unknown request and, with ``require_all_played``, AssertionError if recorded calls were left
    unplayed (the client now makes fewer calls than when recorded).
    """
    mode = mode or cassette_mode()
    if mode not in (RECORD, REPLAY):
        raise ValueError(f"mode must be {RECORD!r} or {REPLAY!r}")
    path = (directory or cassette_dir()) / f"{name}.yaml"
    scrubber = Scrubber()
    for s in secrets:
        scrubber.register_secret(s)
    if mode == RECORD:
        path.unlink(missing_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"cassette {path} does not exist; record it with scripts/record-cassettes")
    rec = Recording(name=name, mode=mode, path=path, scrubber=scrubber)
    with _vcr().use_cassette(
        str(path),
        record_mode=RecordMode.ALL if mode == RECORD else RecordMode.NONE,
        match_on=["vsphere"],
        custom_patches=CUSTOM_PATCHES,
        before_record_request=scrubber.request,
        before_record_response=scrubber.response,
        drop_unused_requests=False,  # True would make vcr rewrite a partly replayed cassette
        allow_playback_repeats=False,
    ) as cassette:
        rec.cassette = cassette
        yield rec
        if mode == REPLAY and require_all_played and not cassette.all_played:
            left = len(cassette) - cassette.play_count
            raise AssertionError(f"cassette {name}: {left} recorded interaction(s) were not replayed")


# ---------------------------------------------------------------------------------------------------------
# Checking cassettes for secrets

_LOGIN_KEY_RE = re.compile(rb"<(?:Login|CloneSession|LoginByToken)Response[^>]*>.*?<key>([^<]*)</key>", re.S)


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):  # response body dict
        return _as_bytes(value.get("string"))
    return str(value).encode()


def find_secrets(path: str | os.PathLike[str], extra: Iterable[str] = ()) -> list[str]:
    """Problems in one cassette file: unscrubbed Login passwords, session cookies or keys that look real,
    Basic credentials, and any of the ``extra`` strings (checked in decoded bodies too)."""
    text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    problems: list[str] = []
    extra = [e for e in extra if e]

    def check_headers(where: str, headers: dict[str, Any]) -> None:
        for name, values in (headers or {}).items():
            for value in values if isinstance(values, list) else [values]:
                value = str(value)
                if name.lower() in ("cookie", "set-cookie"):
                    for m in _COOKIE_RE.finditer(value):
                        if not _PLACEHOLDER_RE.match(m.group(3)):
                            problems.append(f"{where}: {name} carries a real-looking {m.group(1)} value")
                if name.lower() == "authorization" and value != PASSWORD_PLACEHOLDER:
                    problems.append(f"{where}: unscrubbed Authorization header")
                problems.extend(f"{where}: header {name} holds a registered secret" for e in extra if e in value)

    def check_body(where: str, body: bytes) -> None:
        for m in _PASSWORD_RE.finditer(body):
            if m.group(2) != PASSWORD_PLACEHOLDER.encode():
                problems.append(f"{where}: Login <password> not scrubbed")
        for m in _LOGIN_KEY_RE.finditer(body):
            key = m.group(1).decode(errors="replace")
            if not _PLACEHOLDER_RE.match(key):
                problems.append(f"{where}: session key {key[:4]}… in a Login answer is not scrubbed")
        for pattern in _TICKET_RES:
            for m in pattern.finditer(body):
                if not _PLACEHOLDER_RE.match(m.group(2).decode(errors="replace")):
                    problems.append(f"{where}: ticket not scrubbed")
        problems.extend(f"{where}: body holds a registered secret" for e in extra if e.encode() in body)
        plain = any(e.encode() in body for e in extra)
        if extra and not plain and _BASE64_SPAN_RE.search(body) and reveals(body, extra):  # a MIME part's base64
            problems.append(f"{where}: body holds a registered secret under base64 or gzip")
        for m in _GUESTINFO_RE.finditer(body):
            if reveals(m.group(2), extra):
                problems.append(f"{where}: a guestinfo value holds a registered secret under its encodings")

    for i, interaction in enumerate(data.get("interactions", [])):
        req, resp = interaction.get("request", {}), interaction.get("response", {})
        where = f"{Path(path).name}#{i} {req.get('method')} {urlsplit(req.get('uri', '')).path}"
        check_headers(where + " request", req.get("headers", {}))
        check_headers(where + " response", resp.get("headers", {}))
        check_body(where + " request", _as_bytes(req.get("body")))
        check_body(where + " response", _as_bytes(resp.get("body")))
    problems.extend(f"{Path(path).name}: raw text holds a registered secret" for e in extra if e in text)
    return problems


# ---------------------------------------------------------------------------------------------------------
# Network guard for replay


class NetworkBlocked(OSError):
    """Raised by the replay socket guard when code tries to reach the network."""


@contextlib.contextmanager
def block_network() -> Iterator[None]:
    """Make every ``socket.connect``/``connect_ex``/``getaddrinfo`` raise NetworkBlocked (AF_UNIX too:
    a replay needs no socket at all)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkBlocked(f"network access blocked during cassette replay: {args[1:] or args}")

    saved = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = saved  # type: ignore[method-assign]

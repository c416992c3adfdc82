"""Connecting to vCenter/ESXi: settings from arguments and the GOVC_* variables, TLS, re-login and retries.

TLS is verified by default. Three ways to trust a server whose certificate no system CA signed: a CA bundle
(``--ca-file``/``GOVC_TLS_CA_CERTS``), a pinned certificate thumbprint (``--thumbprint``/``GOVC_TLS_KNOWN_HOSTS``),
or the explicit ``--insecure``/``GOVC_INSECURE=1``. The password comes from the environment, a file or a prompt;
it is never accepted in a URL given on the command line, and never logged.
"""

from __future__ import annotations

import getpass
import hashlib
import http.client
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from pyVim import connect as pyvim_connect
from pyVmomi import vim, vmodl
from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tenacity import (
    Retrying as _Retrying,
)

from ..errors import ConfigDriveError
from ..vmdata import ValidationError

log = logging.getLogger(__name__)
T = TypeVar("T")
SESSION_COOKIE = "vmware_soap_session"


# ---- settings ---------------------------------------------------------------------------------------------


@dataclass
class ConnectionSettings:
    """Where and how to connect. Build it with :meth:`from_sources`."""

    host: str
    port: int = 443
    username: str = ""
    password: str = field(default="", repr=False)
    scheme: str = "https"
    ca_file: str | None = None
    thumbprint: str | None = None
    insecure: bool = False
    datacenter: str | None = None
    datastore: str | None = None
    timeout: float = 60.0

    @property
    def url(self) -> str:
        """The SDK URL, without credentials (safe to print)."""
        default_port = 443 if self.scheme == "https" else 80
        port = "" if self.port == default_port else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}/sdk"

    @classmethod
    def from_sources(
        cls,
        url: str | None = None,
        username: str | None = None,
        password_file: str | None = None,
        ca_file: str | None = None,
        thumbprint: str | None = None,
        insecure: bool | None = None,
        datacenter: str | None = None,
        datastore: str | None = None,
        env: Mapping[str, str] | None = None,
        prompt: bool = True,
    ) -> ConnectionSettings:
        """Command-line values first, then GOVC_* (and Ansible's VMWARE_*) variables. ``url`` comes from argv,
        so it may not carry a password."""
        env = os.environ if env is None else env
        if url and _url_password(url) is not None:
            raise ValidationError(
                "url", "must not contain a password (argv is visible to every user); use GOVC_PASSWORD or a file"
            )
        raw_url = url or env.get("GOVC_URL") or env.get("VMWARE_HOST")
        if not raw_url:
            raise ValidationError("url", "no vCenter given: pass --url or set GOVC_URL")
        scheme, host, port, url_user, url_password = parse_url(raw_url)
        settings = cls(host=host, port=port, scheme=scheme)
        settings.username = username or url_user or env.get("GOVC_USERNAME") or env.get("VMWARE_USER") or ""
        if password_file:
            from ..vmdata import read_password_file

            settings.password = read_password_file(password_file)
        else:
            settings.password = url_password or env.get("GOVC_PASSWORD") or env.get("VMWARE_PASSWORD") or ""
        if not settings.username:
            raise ValidationError("username", "no user name: pass --username, or set GOVC_USERNAME or GOVC_URL")
        if not settings.password:
            if not (prompt and _stdin_is_tty()):
                raise ValidationError("password", "no password: set GOVC_PASSWORD or pass --vc-password-file")
            settings.password = getpass.getpass(f"Password for {settings.username}@{host}: ")
        settings.ca_file = ca_file or _first_path(env.get("GOVC_TLS_CA_CERTS"))
        settings.thumbprint = thumbprint or _known_host_thumbprint(env.get("GOVC_TLS_KNOWN_HOSTS"), host)
        if insecure is None:
            insecure = _truthy(env.get("GOVC_INSECURE")) or env.get("VMWARE_VALIDATE_CERTS", "").lower() in (
                "0",
                "false",
                "no",
            )
        settings.insecure = bool(insecure)
        settings.datacenter = datacenter or env.get("GOVC_DATACENTER") or None
        settings.datastore = datastore or env.get("GOVC_DATASTORE") or None
        if settings.thumbprint:
            settings.thumbprint = normalize_thumbprint(settings.thumbprint)
        if settings.ca_file and not os.path.isfile(settings.ca_file):
            raise ValidationError("ca-file", f"{settings.ca_file} does not exist")
        return settings


def parse_url(raw: str) -> tuple[str, str, int, str | None, str | None]:
    """govc's URL forms: ``host``, ``host:port``, ``user:pass@host``, ``https://host/sdk`` … → parts."""
    text = raw.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError("url", "expected [https://][user[:password]@]host[:port][/sdk]")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationError("url", "the port is not a number") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.scheme, parts.hostname, port, user, password


def _url_password(raw: str) -> str | None:
    try:
        return parse_url(raw)[4]
    except ValidationError:
        return None


def normalize_thumbprint(value: str) -> str:
    """``AA:BB:…`` or ``aabb…`` → lower-case hex; SHA-1, SHA-256 or SHA-512 lengths."""
    hexed = re.sub(r"[\s:]", "", value).lower()
    if not re.fullmatch(r"[0-9a-f]+", hexed) or len(hexed) not in (40, 64, 128):
        raise ValidationError("thumbprint", "expected a SHA-1, SHA-256 or SHA-512 certificate thumbprint in hex")
    return hexed


def certificate_thumbprint(der: bytes, length: int) -> str:
    algo = {40: hashlib.sha1, 64: hashlib.sha256, 128: hashlib.sha512}[length]
    return algo(der).hexdigest()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _first_path(paths: str | None) -> str | None:
    for p in (paths or "").split(os.pathsep):
        if p.strip():
            return p.strip()
    return None


def _known_host_thumbprint(path: str | None, host: str) -> str | None:
    """govc's known_hosts file: ``host thumbprint`` per line."""
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2 and fields[0].split(":")[0] == host:
                return fields[1]
    return None


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


# ---- TLS --------------------------------------------------------------------------------------------------


class _PinnedContext(ssl.SSLContext):
    """Accepts exactly the certificate whose thumbprint is pinned, whoever signed it, on every connection."""

    pinned: str = ""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        sock = super().wrap_socket(*args, **kwargs)
        der = sock.getpeercert(binary_form=True) or b""
        if certificate_thumbprint(der, len(self.pinned)) != self.pinned:
            sock.close()
            raise ssl.SSLCertVerificationError("the server's certificate does not match the pinned thumbprint")
        return sock


def ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    if settings.thumbprint:
        ctx = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.pinned = settings.thumbprint
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if settings.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=settings.ca_file)


def requests_verify(settings: ConnectionSettings) -> bool | str:
    if settings.thumbprint or settings.insecure:
        return False  # the thumbprint is checked by the adapter below
    return settings.ca_file or True


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Datastore transfers through the same pinned context as SOAP, so they accept exactly the thumbprints SOAP
    does (urllib3's own ``assert_fingerprint`` knows no SHA-512)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


# ---- transient faults and retries -------------------------------------------------------------------------

TRANSIENT_NETWORK_ERRORS = (
    ConnectionError,
    http.client.RemoteDisconnected,
    http.client.IncompleteRead,
    socket.timeout,
    requests.ConnectionError,
    requests.Timeout,
)


class TransientHttpError(ConfigDriveError):
    """An HTTP answer worth retrying (5xx, 429)."""


def is_transient(error: BaseException) -> bool:
    """Worth another try: connection trouble, 5xx, or vSphere saying another task holds the object."""
    if isinstance(error, requests.exceptions.SSLError):
        error = root_cause(error)  # a refused certificate or thumbprint is permanent; a cut connection is not
    if isinstance(error, (TransientHttpError, *TRANSIENT_NETWORK_ERRORS)):
        return True
    if isinstance(error, ssl.SSLError) and not isinstance(error, ssl.SSLCertVerificationError):
        return "EOF" in str(error) or "reset" in str(error).lower()
    return isinstance(error, (vim.fault.TaskInProgress, vmodl.fault.HostCommunication))


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception requests/urllib3 wrapped (each of their layers repeats the URL)."""
    for _ in range(10):
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in getattr(error, "args", ()) if isinstance(a, BaseException)), None)
        if inner is None:
            break
        error = inner
    return error


def describe_network_error(error: BaseException) -> str:
    """One line for a failed HTTP exchange: its root cause, without the URL."""
    root = root_cause(error)
    text = " ".join(str(root).split()) or type(root).__name__
    if isinstance(root, ssl.SSLCertVerificationError) or "fingerprint" in text.lower():
        return f"TLS verification failed ({text}); trust the server with --ca-file/--thumbprint, or pass --insecure"
    return f"connection failed ({type(root).__name__}: {text})"


def retrying(attempts: int = 5, max_wait: float = 8.0, what: str = "call") -> _Retrying:
    """A tenacity policy: exponential backoff on transient errors only; permanent ones raise at once."""

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (%s); retrying (attempt %d)", what, type(error).__name__, state.attempt_number + 1)

    return _Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.25, max=max_wait),
        before_sleep=log_retry,
        reraise=True,
    )


# ---- the session ------------------------------------------------------------------------------------------


class Session:
    """One logged-in vSphere session, shared by threads: SOAP through pyVmomi, datastore files through
    requests with the same session cookie. Logs in again when vSphere says the session expired."""

    def __init__(self, settings: ConnectionSettings, retry_attempts: int = 5) -> None:
        self.settings = settings
        self.retry_attempts = retry_attempts
        self.si: vim.ServiceInstance | None = None
        self._content: vim.ServiceInstanceContent | None = None
        self._login_lock = threading.Lock()
        self._login_generation = 0
        self._local = threading.local()
        # Batch mode gives each thread its own property collector (vSphere's advice for concurrent clients);
        # a single operation uses the service's default one and saves the call that creates another.
        self.per_thread_collectors = False
        self._collectors: list[Any] = []
        self._collectors_lock = threading.Lock()

    # -- connecting

    def connect(self) -> Session:
        ctx = ssl_context(self.settings)
        try:
            self.si = pyvim_connect.SmartConnect(
                protocol=self.settings.scheme,
                host=self.settings.host,
                port=self.settings.port,
                user=self.settings.username,
                pwd=self.settings.password,
                sslContext=ctx if self.settings.scheme == "https" else None,
                connectionPoolTimeout=-1,
                httpConnectionTimeout=self.settings.timeout,
            )
        except vim.fault.InvalidLogin:
            raise ConfigDriveError(f"login to {self.settings.url} as {self.settings.username} was refused") from None
        except ssl.SSLCertVerificationError as e:
            reason = getattr(e, "verify_message", None) or e  # the pinning context raises one without it
            raise ConfigDriveError(
                f"TLS verification of {self.settings.url} failed ({reason}); trust it with "
                "--ca-file/GOVC_TLS_CA_CERTS or --thumbprint, or pass --insecure"
            ) from None
        except vim.fault.HostConnectFault as e:
            raise ConfigDriveError(f"cannot connect to {self.settings.url}: {_clean(e.msg)}") from None
        except (OSError, ssl.SSLError) as e:
            raise ConfigDriveError(f"cannot connect to {self.settings.url}: {e}") from None
        self._content = self.si.content
        self._login_generation += 1
        log.info("connected to %s as %s", self.settings.url, self.settings.username)
        return self

    def property_collector(self) -> Any:
        """The property collector for the calling thread."""
        if not self.per_thread_collectors:
            return self.content.propertyCollector
        pc = getattr(self._local, "collector", None)
        if pc is None:
            default = self.content.propertyCollector
            pc = self.call(default.CreatePropertyCollector, "CreatePropertyCollector")
            self._local.collector = pc
            with self._collectors_lock:
                self._collectors.append(pc)
        return pc

    def close(self) -> None:
        with self._collectors_lock:
            collectors, self._collectors = self._collectors, []
        for pc in collectors:
            try:
                pc.DestroyPropertyCollector()
            except Exception:  # the session ends anyway; the collectors go with it
                log.debug("destroying a property collector failed", exc_info=True)
        if self.si is not None:
            try:
                self._content.sessionManager.Logout()
            except Exception:  # logging out is a courtesy; the session expires anyway
                log.debug("logout failed", exc_info=True)
            self.si = None

    def __enter__(self) -> Session:
        return self.connect() if self.si is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def content(self) -> vim.ServiceInstanceContent:
        if self._content is None:
            raise ConfigDriveError("not connected")
        return self._content

    @property
    def stub(self) -> Any:
        return self.si._stub

    def relogin(self, seen_generation: int) -> None:
        """Log in again, once, however many threads saw the session expire."""
        with self._login_lock:
            if self._login_generation != seen_generation:
                return
            log.info("session expired; logging in again")
            try:
                self.content.sessionManager.Login(self.settings.username, self.settings.password, None)
            except vim.fault.InvalidLogin:
                raise ConfigDriveError("logging in again after the session expired was refused") from None
            self._login_generation += 1
            self._local.__dict__.pop("http", None)

    # -- calling

    def call(self, fn: Callable[[], T], what: str = "vSphere call") -> T:
        """Run one SOAP call: re-login on NotAuthenticated, retry transient failures with backoff."""
        for attempt in retrying(self.retry_attempts, what=what):
            with attempt:
                generation = self._login_generation
                try:
                    return fn()
                except vim.fault.NotAuthenticated:
                    self.relogin(generation)
                    return fn()
        raise AssertionError("unreachable")  # pragma: no cover

    # -- HTTP to the datastore

    def session_cookie(self) -> str:
        cookie = SimpleCookie()
        cookie.load(self.stub.cookie or "")
        morsel = cookie.get(SESSION_COOKIE)
        if morsel is None:
            raise ConfigDriveError("no vSphere session cookie (not logged in?)")
        return morsel.value

    def http(self) -> requests.Session:
        """A requests session for this thread, carrying the current vSphere session cookie."""
        cached = getattr(self._local, "http", None)
        if cached is not None and cached[0] == self._login_generation:
            return cached[1]
        http = requests.Session()
        http.verify = requests_verify(self.settings)
        if self.settings.thumbprint:
            http.mount("https://", _PinnedAdapter(ssl_context(self.settings)))
        if http.verify is False:
            # A pin is verified by the adapter, --insecure was asked for: urllib3's "Unverified HTTPS request"
            # warning would be wrong or redundant, and would break the CLI's one-line output.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        http.cookies.set(SESSION_COOKIE, self.session_cookie())
        http.headers["User-Agent"] = "esxi-configdrive"
        self._local.http = (self._login_generation, http)
        return http

    @property
    def login_generation(self) -> int:
        return self._login_generation

    def base_url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{self.settings.scheme}://{host}:{self.settings.port}"


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())

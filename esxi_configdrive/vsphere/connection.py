"""One logged-in vSphere session: SOAP through pyVmomi, datastore files through requests with the same session
cookie, re-login when the session expired, retries of transient failures (retries.py), TLS (tls.py).

``ConnectionSettings`` is imported here too, where the documented API finds it (docs/usage.md).
"""

from __future__ import annotations

import http.client
import logging
import re
import ssl
import threading
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from xml.etree import ElementTree
from xml.parsers.expat import ExpatError

import requests
import urllib3
from pyVmomi import SoapStubAdapter, vim, vmodl
from pyVmomi.VmomiSupport import GetServiceVersions, IsChildVersion, versionIdMap

from ..errors import ConfigDriveError, fault_line, fault_message
from .retries import is_throttled, is_transient, retrying
from .settings import ConnectionSettings
from .tls import PinnedAdapter, requests_verify, ssl_context

__all__ = ["ConnectionSettings", "Session"]  # where docs/usage.md finds them

log = logging.getLogger(__name__)
T = TypeVar("T")


def present(manager: T | None, name: str) -> T:
    """A manager of the service content that every vCenter and ESXi has (pyVmomi's stubs type them optional)."""
    if manager is None:
        raise ConfigDriveError(f"this vSphere endpoint has no {name}")
    return manager


SESSION_COOKIE = "vmware_soap_session"
# The API version of the first request, before the server has said which it speaks: pyVmomi's own default
# (pyVim/connect.py, ``Connect``: ``version = "vim.version.version9"``, vSphere API 5.5). Every manager of the service
# content this tool uses exists in it (tests/test_connection_login.py checks), so the content read with it serves.
FIRST_VERSION = "vim.version.version9"
VERSIONS_LIST_LIMIT = 64 * 1024  # /sdk/vimServiceVersions.xml: a few hundred bytes on vCenter and ESXi
VERSION_PATTERN = re.compile(r"\d{1,9}(\.\d{1,9}){0,7}", re.ASCII)  # an API version: "8.0.3.0"
RELOGINS_PER_CALL = 5  # a session terminated again right after each login is given up on after this many


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
        # How tasks are waited for: None polls each task on its own; batch mode installs a shared poller
        # (task_poller.py) that polls every task in flight in one call per round.
        self.task_waiter: Any = None
        # Datastore folders seen to exist (ConfigDrive/ of each datastore): a cache of vSphere's state, so a batch
        # makes each parent folder once; a stale entry costs a retry (DatastoreFiles.mkdir makes it again).
        self.known_folders: set[str] = set()
        self.folders_lock = threading.Lock()
        self._collectors: list[Any] = []
        self._collectors_lock = threading.Lock()

    # -- connecting

    def connect(self) -> Session:
        # A vCenter too busy to answer is waited for; one that cannot be reached or refuses is said at once.
        self.si, self._content = self._throttled(self._login, "login")
        self._login_generation += 1
        log.info("connected to %s as %s", self.settings.url, self.settings.username)
        return self

    def _throttled(self, fn: Callable[[], T], what: str) -> T:
        for attempt in retrying(self.retry_attempts, what=what, worth_it=is_throttled):
            with attempt:
                return fn()
        raise AssertionError("unreachable")  # pragma: no cover

    def _login(self) -> tuple[vim.ServiceInstance, vim.ServiceInstanceContent]:
        """Two requests: RetrieveServiceContent, then Login in the newest API version both sides speak (two more
        only for a server that refuses the first request's version: ``_service_content``).

        pyVmomi's ``SmartConnect`` (pyVim/connect.py) takes four: it GETs /sdk/vimServiceVersions.xml on a
        connection of its own (``__FindSupportedVersion``: a TCP and TLS handshake more) to pick the first of
        pyVmomi's versions the server lists, then ``__Login`` calls RetrieveServiceContent and Login and drops the
        content, which ``si.content`` then fetches again. The content names the server's version itself
        (``about.apiVersion``), so the version is chosen from it (``api_version``) and the content is kept."""
        settings = self.settings
        try:
            stub = SoapStubAdapter(
                host=settings.host,
                port=settings.port if settings.scheme == "https" else -settings.port,  # pyVmomi: < 0 is plain HTTP
                path="/sdk",
                version=FIRST_VERSION,
                sslContext=ssl_context(settings) if settings.scheme == "https" else None,
                connectionPoolTimeout=-1,
                httpConnectionTimeout=settings.timeout,
            )
            si = vim.ServiceInstance("ServiceInstance", stub)
            content = _service_content(si, stub, settings.url)
            if content is None or content.about is None:  # XML, but not a SOAP answer: some other web server
                raise ConfigDriveError(f"cannot connect to {settings.url}: no vSphere SDK answered")
            stub.ComputeVersionInfo(api_version(content.about.apiVersion))
            present(content.sessionManager, "SessionManager").Login(settings.username, settings.password, None)
            return si, content
        except vim.fault.InvalidLogin:
            raise ConfigDriveError(f"login to {settings.url} as {settings.username} was refused") from None
        except ssl.SSLCertVerificationError as e:
            reason = getattr(e, "verify_message", None) or e  # the pinning context raises one without it
            raise ConfigDriveError(
                f"TLS verification of {settings.url} failed ({reason}); trust it with "
                "--ca-file/GOVC_TLS_CA_CERTS or --thumbprint, or pass --insecure"
            ) from None
        except vim.fault.HostConnectFault as e:
            # pyVmomi faults carry ``msg`` (MethodFault's message); its stubs do not list it
            raise ConfigDriveError(
                f"cannot connect to {settings.url}: {_clean(getattr(e, 'msg', '') or str(e))}"
            ) from None
        except http.client.HTTPException as e:
            if is_throttled(e):
                raise  # waited for by connect
            raise ConfigDriveError(f"cannot connect to {settings.url}: no vSphere SDK answered ({e})") from None
        except (OSError, ssl.SSLError) as e:
            raise ConfigDriveError(f"cannot connect to {settings.url}: {e}") from None
        except ExpatError:  # an answer that is not XML: some other web server
            raise ConfigDriveError(f"cannot connect to {settings.url}: no vSphere SDK answered (not XML)") from None

    def serve_threads(self, threads: int) -> None:
        """Keep an idle connection for each of ``threads`` threads: pyVmomi's stub keeps 5 (``poolSize``) and
        closes any other after its call, so more threads than that would pay a new TCP and TLS handshake on most
        calls."""
        stub = self.stub
        stub.poolSize = max(stub.poolSize, threads)

    def property_collector(self) -> Any:
        """The property collector for the calling thread: one of the current session (a collector goes with the
        session that created it)."""
        if not self.per_thread_collectors:
            return self.content.propertyCollector
        held = getattr(self._local, "collector", None)
        if held is not None and held[0] == self._login_generation:
            return held[1]
        default = self.content.propertyCollector
        pc = self.call(default.CreatePropertyCollector, "CreatePropertyCollector")
        self._local.collector = (self._login_generation, pc)
        with self._collectors_lock:
            self._collectors.append(pc)
        return pc

    def collect(self, fn: Callable[[Any], T], what: str = "RetrievePropertiesEx") -> T:
        """A call to the calling thread's property collector, ``fn(collector)``, as ``call`` runs it: after a
        re-login the next try goes to a collector of the new session."""
        return self.call(lambda: fn(self.property_collector()), what)

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
                present(self.content.sessionManager, "SessionManager").Logout()
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
        return self.service_instance._stub

    @property
    def service_instance(self) -> vim.ServiceInstance:
        if self.si is None:
            raise ConfigDriveError("not connected")
        return self.si

    def relogin(self, seen_generation: int) -> None:
        """Log in again, once, however many threads saw the session lost. What belonged to the old session goes
        with it: the property collectors (each thread makes a new one when it next needs one) and the cookie of
        the datastore requests; tasks are vCenter's, so they are still followed through the new session."""
        with self._login_lock:
            if self._login_generation != seen_generation:
                return
            log.info("session lost; logging in again")
            try:
                manager = present(self.content.sessionManager, "SessionManager")
                manager.Login(self.settings.username, self.settings.password, None)
            except vim.fault.InvalidLogin:
                raise ConfigDriveError("logging in again after the session was lost was refused") from None
            with self._collectors_lock:
                self._collectors = []
            self._login_generation += 1
            self._local.__dict__.pop("http", None)

    def still_logged_in(self) -> bool:
        """Whether vSphere still knows this session: a /folder 401 on a live session is a refusal (privileges), not
        an expiry, and must not make every worker of a batch log in again."""
        try:
            return present(self.content.sessionManager, "SessionManager").currentSession is not None
        except vmodl.MethodFault:  # NotAuthenticated, or an answer with the property missing
            return False

    # -- calling

    def call(
        self, fn: Callable[[], T], what: str = "vSphere call", worth_it: Callable[[BaseException], bool] = is_transient
    ) -> T:
        """Run one SOAP call: log in again when the session was lost, retry the failures ``worth_it`` (transient
        ones; a change passes vsphere/changes.py's narrower rule) with backoff."""
        for attempt in retrying(self.retry_attempts, what=what, worth_it=worth_it):
            with attempt:
                # logged in again (once for all threads) as often as the session is found lost: a lost session's
                # answer was a refusal, nothing was done, so ``fn`` runs again whatever it changes (inline, not a
                # helper: one frame less under every change sent)
                for _ in range(RELOGINS_PER_CALL):
                    generation = self._login_generation
                    try:
                        return _session_checked(fn())
                    except vim.fault.NotAuthenticated:
                        self.relogin(generation)
                    except vmodl.fault.ManagedObjectNotFound as e:
                        if not isinstance(e.obj, vmodl.query.PropertyCollector):
                            raise
                        self.relogin(generation)  # a collector of ours is gone: so is the session that made it
                return _session_checked(fn())
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
        if self.settings.thumbprint:
            http.mount("https://", PinnedAdapter(ssl_context(self.settings)))
        verify = requests_verify(self.settings)
        if verify is False:
            # A pin is verified by the adapter, --insecure was asked for: urllib3's "Unverified HTTPS request"
            # warning would be wrong or redundant, and would break the CLI's one-line output.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # What requests takes from the environment (trust_env: the proxies and NO_PROXY, REQUESTS_CA_BUNDLE or
        # CURL_CA_BUNDLE where no CA file was given, a .netrc login), looked up once: it would look them up again
        # for every request, and every request of a session goes to the same host. A --ca-file, a pin or
        # --insecure wins over the environment's bundle, as before (requests lets the bundle replace a verify=True).
        found = http.merge_environment_settings(self.base_url(), {}, None, verify, None)
        http.proxies, http.verify = found["proxies"], found["verify"]
        http.auth = requests.utils.get_netrc_auth(self.base_url())
        http.trust_env = False
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


def _service_content(si: vim.ServiceInstance, stub: Any, url: str) -> vim.ServiceInstanceContent:
    """RetrieveServiceContent in FIRST_VERSION. vSphere answers a request in a version it does not serve with a
    fault ("Request version ... are not supported", docs/testing.md fault 12); no vSphere known to us refuses 5.5,
    but one that drops it is then asked which versions it serves, as SmartConnect asks first
    (/sdk/vimServiceVersions.xml), and asked again in the newest of them: two requests more, only for such a server."""
    try:
        return si.RetrieveContent()
    except vmodl.RuntimeFault as refused:  # needs no login and names no object: a fault here is the version
        version = served_version(stub)
        if version is None:
            raise ConfigDriveError(f"cannot connect to {url}: {fault_line(refused)}") from None
        if IsChildVersion(stub.version, version):  # not newer than the refused one (pyVmomi never goes older)
            raise ConfigDriveError(
                f"cannot connect to {url}: its newest API ({versionIdMap.get(version, version)}) is older than "
                f"{versionIdMap[FIRST_VERSION]}, the oldest this tool speaks ({fault_line(refused)})"
            ) from None
        log.info("%s refused API %s (%s); using %s", url, stub.version, fault_message(refused), version)
        stub.ComputeVersionInfo(version)
    try:
        return si.RetrieveContent()
    except vmodl.RuntimeFault as refused:  # refused in the version the server itself lists
        raise ConfigDriveError(f"cannot connect to {url}: {fault_line(refused)}") from None


def served_version(stub: Any) -> str | None:
    """pyVmomi's version for the newest vim25 version /sdk/vimServiceVersions.xml lists (None: no such list). The
    list is a few hundred bytes; more than VERSIONS_LIST_LIMIT is no list."""
    conn = stub.GetConnection()
    try:
        conn.request("GET", f"{stub.path}/vimServiceVersions.xml")
        answer = conn.getresponse()
        body = answer.read(VERSIONS_LIST_LIMIT + 1)
    except (OSError, http.client.HTTPException):
        conn.close()
        return None
    if answer.status != 200 or len(body) > VERSIONS_LIST_LIMIT:
        conn.close()
        return None
    stub.ReturnConnection(conn)
    try:
        listed = [
            (v.text or "").strip()
            for space in ElementTree.fromstring(body).iter("namespace")
            if space.findtext("name") == "urn:vim25"
            for v in space.iter("version")
        ]
    except ElementTree.ParseError:
        return None
    numbered = [(n, v) for v in listed if (n := _numbers(v))]
    return api_version(max(numbered)[1]) if numbered else None


def api_version(server: str | None) -> str:
    """pyVmomi's newest vim25 version no newer than the server's ``about.apiVersion``: what ``SmartConnect`` picks
    from vimServiceVersions.xml, whose list runs from the server's version down through every older one. Versions
    pyVmomi names by an internal id rather than a number are passed over (a server below them is served
    by the release before); a version that is not a number leaves the first one."""
    wanted = _numbers(server or "")
    if wanted is None:
        return FIRST_VERSION
    spoken = [(n, v) for v in GetServiceVersions("vim25") if (n := _numbers(versionIdMap.get(v, ""))) and n <= wanted]
    return max(spoken)[1] if spoken else FIRST_VERSION


def _numbers(version: str) -> tuple[int, ...] | None:
    """``"8.0.3.0"`` -> (8, 0, 3, 0); None for anything else (a server's text: ASCII digits only, bounded)."""
    if not VERSION_PATTERN.fullmatch(version):
        return None
    return tuple(int(p) for p in version.split("."))


def _session_checked(answer: T) -> T:
    """A property collector's answer about a lost session: stock vcsim answers the default collector without a
    fault, every property missing with NotAuthenticated (a waiter reading no task state would wait to its
    timeout). Raised as the NotAuthenticated it is."""
    for obj in getattr(answer, "objects", None) or ():
        for missing in getattr(obj, "missingSet", None) or ():
            if isinstance(missing.fault, vim.fault.NotAuthenticated):
                raise missing.fault
    return answer


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())

"""The login (vsphere/connection.py ``Session._login``): two requests, RetrieveServiceContent and Login, in the API
version pyVmomi's ``SmartConnect`` would choose, against the harness (vCenter and standalone ESXi) and stock vcsim;
the version chosen from ``about.apiVersion`` for the versions vCenter 7 and 8 and ESXi report; and the service
content read in the first request's version holds every manager the tool uses."""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import VmomiSupport, vim
from tool_fixtures import settings_for
from vsphere_harness import StockVcsim, Vcsim, connect, disconnect

from esxi_configdrive.errors import ConfigDriveError
from esxi_configdrive.vsphere.connection import (
    FIRST_VERSION,
    ConnectionSettings,
    Session,
    api_version,
    served_version,
)

PACKAGES = [Path(__file__).resolve().parents[1] / d for d in ("esxi_configdrive", "ansible_collections")]


def test_a_login_is_two_requests_and_the_content_is_not_fetched_again(vcsim_faults: Vcsim) -> None:
    session = Session(settings_for(vcsim_faults)).connect()
    try:
        assert vcsim_faults.counters()["soap_by_method"] == {"RetrieveServiceContent": 1, "Login": 1}
        assert session.content.about.apiVersion and session.content.rootFolder is not None
        assert session.still_logged_in()  # the session is a logged-in one
    finally:
        session.close()


def test_a_server_that_no_longer_serves_the_first_version_is_asked_which_it_serves(vcsim_faults: Vcsim) -> None:
    """Fault 12: RetrieveServiceContent in API 5.5 refused, as vSphere refuses a version it does not serve. The login
    reads /sdk/vimServiceVersions.xml (vcsim lists 6.5, 6.0 and 5.5) and goes on in the newest version listed."""
    vcsim_faults.set_faults(refused_versions=["5.5"])
    session = Session(settings_for(vcsim_faults)).connect()
    try:
        counters = vcsim_faults.counters()
        assert counters["faults"]["version_refused"] == 1
        assert counters["soap_by_method"] == {"RetrieveServiceContent": 2, "Login": 1}
        assert session.stub.version == api_version("6.5") != FIRST_VERSION
        assert session.content.about.apiVersion == "6.5"
        assert session.still_logged_in()
    finally:
        session.close()


def test_a_server_serving_no_version_it_lists_is_a_clear_error_before_the_password_is_sent(
    vcsim_faults: Vcsim,
) -> None:
    vcsim_faults.set_faults(refused_versions=["5.5", "6.0", "6.5"])
    with pytest.raises(ConfigDriveError) as refused:
        Session(settings_for(vcsim_faults)).connect()
    assert str(refused.value) == (
        f"cannot connect to {vcsim_faults.url}: vSphere fault vmodl.RuntimeFault: Request version 'urn:vim25/6.5' and "
        "namespace 'urn:vim25' are not supported"
    )
    assert vcsim_faults.counters()["soap_by_method"] == {"RetrieveServiceContent": 2}  # no Login


@pytest.fixture(scope="module", params=["harness", "harness-esx", "stock", "stock-esx"])
def any_sim(request: pytest.FixtureRequest, vcsim_binary: Path) -> Iterator[Vcsim]:
    kind = StockVcsim if request.param.startswith("stock") else Vcsim
    with kind(vcsim_binary, extra_args=["-esx"] if request.param.endswith("esx") else []) as sim:
        yield sim


def test_the_version_is_the_one_smart_connect_negotiates(any_sim: Vcsim) -> None:
    si = connect(any_sim)  # pyVmomi's SmartConnect: GET /sdk/vimServiceVersions.xml
    try:
        negotiated = si._stub.version
    finally:
        disconnect(si)
    session = Session(settings_for(any_sim)).connect()
    try:
        assert session.stub.version == negotiated
        assert session.still_logged_in()
        assert served_version(session.stub) == negotiated  # the fallback's reading of the list, here unrefused
    finally:
        session.close()


@pytest.mark.parametrize(
    ("about", "expected"),
    [
        ("6.5", "vim.version.version11"),  # vcsim
        ("6.7.3", "vim.version.version15"),
        ("7.0.3.0", "vim.version.v7_0_3_0"),  # vCenter and ESXi 7.0 Update 3
        ("7.0.3.2", "vim.version.v7_0_3_2"),
        ("8.0.2.0", "vim.version.v8_0_2_0"),
        ("8.0.3.0", "vim.version.v8_0_3_0"),  # vCenter and ESXi 8.0 Update 3
        ("9.1.0.1", "vim.version.v9_1_0_0"),  # pyVmomi names 9.1.0.1 by an internal id: the release before
        ("", FIRST_VERSION),
        ("not-a-version", FIRST_VERSION),
    ],
)
def test_the_version_from_about(about: str, expected: str) -> None:
    assert api_version(about) == expected


def test_a_server_newer_than_pyvmomi_gets_pyvmomis_newest_numbered_version() -> None:
    numbered = [v for v in VmomiSupport.GetServiceVersions("vim25") if re.fullmatch(r"[\d.]+", v_id(v))]
    newest = max(numbered, key=lambda v: tuple(int(p) for p in v_id(v).split(".")))
    assert api_version("99.0.0.0") == newest


def v_id(version: str) -> str:
    return VmomiSupport.versionIdMap.get(version, "")


def test_every_manager_the_tool_reads_is_in_the_first_version_s_content() -> None:
    """A vCenter answers RetrieveServiceContent in the request's version: a manager newer than FIRST_VERSION would
    be missing from the content on a real vCenter (vcsim sends them all)."""
    info = {p.name: p for p in vim.ServiceInstanceContent._GetPropertyList()}
    used = set()
    for root in PACKAGES:
        for path in root.rglob("*.py"):
            used |= {m for m in re.findall(r"content\.(\w+)", path.read_text(encoding="utf-8")) if m in info}
    assert {"rootFolder", "propertyCollector", "sessionManager", "fileManager"} <= used
    newer = sorted(m for m in used if not VmomiSupport.IsChildVersion(FIRST_VERSION, info[m].version))
    assert not newer, f"{newer} are newer than {FIRST_VERSION}: read them with the negotiated version"


class NotVsphere(http.server.BaseHTTPRequestHandler):
    """Some other web server where the SDK should be: a page, or nothing at /sdk."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.server.status  # type: ignore[attr-defined]
        pages = {200: b"<html><body>a web page", 201: b'<?xml version="1.0"?><html><body>well-formed</body></html>'}
        body = pages.get(status, b"not here")
        status = 200 if status == 201 else status  # 201: a well-formed XHTML page, answered 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def web_server(handler: type[http.server.BaseHTTPRequestHandler], **state: Any) -> Iterator[Any]:
    """A plain-HTTP server on loopback with ``state`` set on it for ``handler``; its URL is ``server.url``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in state.items():
        setattr(server, name, value)
    server.url = f"http://127.0.0.1:{server.server_port}/sdk"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


def settings_at(url: str) -> ConnectionSettings:
    return ConnectionSettings.from_sources(url=url, env={"GOVC_USERNAME": "u", "GOVC_PASSWORD": "p"})


@pytest.mark.parametrize("status", [200, 201, 404])
def test_a_web_server_that_is_not_vsphere_is_one_clear_line(status: int) -> None:
    refused = pytest.raises(ConfigDriveError, match=r"^cannot connect to http://127\.0\.0\.1:\d+/sdk: no vSphere SDK")
    with web_server(NotVsphere, status=status) as server, refused:
        Session(settings_at(server.url)).connect()


VERSION_FAULT = (
    b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Request version 'urn:vim25/5.5' "
    b"and namespace 'urn:vim25' are not supported</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)


class RefusesFiveFive(http.server.BaseHTTPRequestHandler):
    """A hand-written stand-in (no simulator serves an old or odd version list): every SOAP call refused as fault 12
    refuses it, and ``server.versions`` as /sdk/vimServiceVersions.xml."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posts += 1  # type: ignore[attr-defined]
        self.answer(500, VERSION_FAULT)

    def do_GET(self) -> None:
        self.answer(200, self.server.versions)  # type: ignore[attr-defined]

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def versions_list(*versions: str) -> bytes:
    listed = "".join(f"<version>{v}</version>" for v in versions)
    return f"<namespaces><namespace><name>urn:vim25</name>{listed}</namespace></namespaces>".encode()


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (
            versions_list("5.1", "5.0"),
            r"its newest API \(5\.1\) is older than 5\.5, the oldest this tool speaks \(vSphere fault",
        ),
        (
            versions_list("\u00b2", "1" * 5000),
            r"vSphere fault vmodl.RuntimeFault: Request version 'urn:vim25/5\.5'",
        ),  # no version
        (
            b"<namespaces>" + b" " * 70_000 + b"</namespaces>",
            r"vSphere fault vmodl.RuntimeFault: Request version",
        ),  # too long
        (b"not xml", r"vSphere fault vmodl.RuntimeFault: Request version"),
    ],
)
def test_a_refused_first_request_without_a_newer_version_listed_is_one_clear_line(
    versions: bytes, expected: str
) -> None:
    with web_server(RefusesFiveFive, versions=versions, posts=0) as server:
        with pytest.raises(ConfigDriveError, match=rf"^cannot connect to {re.escape(server.url)}: {expected}"):
            Session(settings_at(server.url)).connect()
        assert server.posts == 1  # nothing asked again, no Login

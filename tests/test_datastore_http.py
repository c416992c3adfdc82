"""What the datastore transfers take from the environment, looked up once per HTTP session (connection.py
``Session.http``) rather than by requests on every transfer: a proxy (``HTTPS_PROXY``, ``NO_PROXY``) and, where no
CA file was given, ``REQUESTS_CA_BUNDLE``; a ``--ca-file`` still wins over it. Against the live harness, through a
real CONNECT proxy."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from reliability_fixtures import tool_session
from vsphere_harness import Vcsim

from esxi_configdrive.vsphere.datastore import DatastoreFiles
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live
MISSING = DatastorePath("LocalDS_0", "no-such-folder/no-such.iso")


class ConnectProxy:
    """An HTTPS proxy on loopback: opens a tunnel for each CONNECT and counts them."""

    def __init__(self) -> None:
        self.tunnels = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            verb, target = head.split(b" ", 2)[:2]
            host, port = target.decode().rsplit(":", 1)
            if verb != b"CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.tunnels += 1
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                back.start()
                _pipe(client, upstream)
                back.join(10)

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy()
    yield p
    p.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("bypassed", [False, True])
def test_transfers_go_through_the_environment_s_proxy_unless_no_proxy_says(
    vcsim_faults: Vcsim, proxy: ConnectProxy, clean_env: pytest.MonkeyPatch, bypassed: bool
) -> None:
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    if bypassed:
        clean_env.setenv("NO_PROXY", "127.0.0.1,localhost")
    looked_up = []
    lookup = requests.sessions.get_environ_proxies
    clean_env.setattr(requests.sessions, "get_environ_proxies", lambda *a, **k: looked_up.append(a) or lookup(*a, **k))
    with tool_session(vcsim_faults) as s:
        files = DatastoreFiles(s, s.content.rootFolder.childEntity[0], "DC0")
        for _ in range(3):  # one tunnel, kept alive, for the session's transfers
            assert files.exists(MISSING) is False
    assert proxy.tunnels == (0 if bypassed else 1)
    assert len(looked_up) == 1  # once for the HTTP session, not once per transfer
    assert sum(vcsim_faults.counters()["folder_requests"].values()) == 3


def test_without_a_ca_file_the_environment_s_bundle_verifies_transfers(
    vcsim_faults: Vcsim, clean_env: pytest.MonkeyPatch
) -> None:
    """SOAP trusts the harness through SSL_CERT_FILE (OpenSSL's default paths); the transfers through
    REQUESTS_CA_BUNDLE, as requests does: a bundle that is not there refuses them (requests' own error)."""
    clean_env.setenv("SSL_CERT_FILE", vcsim_faults.ca_file)
    clean_env.setenv("REQUESTS_CA_BUNDLE", vcsim_faults.ca_file)
    with tool_session(vcsim_faults, ca_file=None) as s:
        assert DatastoreFiles(s, s.content.rootFolder.childEntity[0], "DC0").exists(MISSING) is False
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/nonexistent")
    with tool_session(vcsim_faults, ca_file=None) as s, pytest.raises(OSError, match="invalid path: /nonexistent"):
        DatastoreFiles(s, s.content.rootFolder.childEntity[0], "DC0").exists(MISSING)


def test_a_ca_file_wins_over_the_environment_s_bundle(vcsim_faults: Vcsim, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/nonexistent")
    with tool_session(vcsim_faults) as s:  # settings_for gives the harness's CA file
        assert DatastoreFiles(s, s.content.rootFolder.childEntity[0], "DC0").exists(MISSING) is False

"""TLS against the harness (a self-signed P-256 certificate made at start-up): refused without trust; accepted with
the CA file, a pinned thumbprint (SHA-1, SHA-256, SHA-512, computed here from the served certificate) or the
explicit insecure switch; refused with a wrong thumbprint, for SOAP and for datastore uploads alike.

This machine sets REQUESTS_CA_BUNDLE and SSL_CERT_FILE (the system bundle): the CLI runs here with a clean
environment, and a first test shows neither the system CAs nor those variables trust the harness.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
from pathlib import Path

import pytest
import requests
import tenacity
from reliability_fixtures import cli_env, cli_in_process, iso_of, run_cli, tool_session, vsphere_writes
from tool_fixtures import fetch_file
from vsphere_harness import Vcsim

from esxi_configdrive import VmData
from esxi_configdrive.errors import ConfigDriveError
from esxi_configdrive.vsphere.datastore import DatastoreFiles
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live

DATA = VmData.from_dict({"metadata": {"vm-id": "4a3b2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d"}, "password": "tls-Passw0rd"})
TRUST_HINT = ("--ca-file", "--thumbprint", "--insecure")


def served_certificate(sim: Vcsim) -> bytes:
    """The DER certificate the harness presents (fetched without verification, as an admin would with openssl)."""
    pem = ssl.get_server_certificate((sim.host, sim.port))
    return ssl.PEM_cert_to_DER_cert(pem)


def thumbprint(der: bytes, algorithm: str, colons: bool = False) -> str:
    digest = hashlib.new(algorithm, der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper() if colons else digest


def wrong(print_: str) -> str:
    return ("0" if print_[0] != "0" else "1") + print_[1:]


@pytest.fixture
def vm_and_data(make_vm, tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(DATA.to_dict()))
    return make_vm().name, path


def trustless_env(sim: Vcsim, **extra: str) -> dict[str, str]:
    env = cli_env(sim)
    env.pop("GOVC_TLS_CA_CERTS", None)
    env.update(extra)
    return env


def test_neither_system_cas_nor_requests_ca_bundle_trust_the_harness(vcsim: Vcsim) -> None:
    with (
        socket.create_connection((vcsim.host, vcsim.port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(sock, server_hostname=vcsim.host)
    with requests.Session() as s, pytest.raises(requests.exceptions.SSLError):  # trust_env: REQUESTS_CA_BUNDLE
        s.get(vcsim.url, timeout=10)


@pytest.mark.parametrize("command", ["status", "attach"])
def test_refused_without_trust(vcsim_faults: Vcsim, vm_and_data, command: str, tally) -> None:
    name, vmdata = vm_and_data
    args = [command, name] + (["--vmdata", str(vmdata)] if command == "attach" else [])
    # even with REQUESTS_CA_BUNDLE trusting the harness: the SOAP connection decides, and it is refused
    for env in (trustless_env(vcsim_faults), trustless_env(vcsim_faults, REQUESTS_CA_BUNDLE=vcsim_faults.ca_file)):
        vcsim_faults.reset_faults()
        run = cli_in_process(args, env)
        assert run.status == 1, run.err
        assert len(run.err.splitlines()) == 1 and "TLS verification" in run.err
        assert all(hint in run.err for hint in TRUST_HINT), run.err
        assert vcsim_faults.counters()["soap_calls"] == 0  # not even logged in
    tally.add("tls", f"refused without trust ({command})", cases=2)


def _attach_and_check(sim: Vcsim, vsphere, name: str, vmdata: Path, args: list[str], env: dict[str, str]) -> None:
    sim.reset_faults()
    run = cli_in_process(["attach", name, "--vmdata", str(vmdata), *args, "--json"], env)
    assert run.status == 0, run.err
    iso = run.json()["iso"]
    assert fetch_file(sim, vsphere, iso) == iso_of(DATA)  # the upload went through, over the same trust
    assert sim.counters()["folder_requests"].get("PUT") == 1
    status = cli_in_process(["status", name, "--json", *args], env)
    assert status.status == 0 and status.json()["matches_record"] is True, status.err


def test_accepted_with_the_ca_file(vcsim_faults: Vcsim, vsphere, vm_and_data, tally) -> None:
    name, vmdata = vm_and_data
    env = trustless_env(vcsim_faults, GOVC_TLS_CA_CERTS=vcsim_faults.ca_file)
    _attach_and_check(vcsim_faults, vsphere, name, vmdata, [], env)
    run = cli_in_process(["status", name, "--ca-file", vcsim_faults.ca_file], trustless_env(vcsim_faults))
    assert run.status == 0, run.err
    tally.add("tls", "accepted: GOVC_TLS_CA_CERTS, --ca-file", cases=2)


@pytest.mark.parametrize(
    ("algorithm", "colons", "how"),
    [
        ("sha1", True, "flag"),
        ("sha1", False, "known_hosts"),
        ("sha256", False, "flag"),
        ("sha256", True, "known_hosts"),
        ("sha512", False, "flag"),
    ],
)
def test_accepted_with_the_right_pinned_thumbprint(
    vcsim_faults: Vcsim, vsphere, vm_and_data, tmp_path: Path, algorithm: str, colons: bool, how: str, tally
) -> None:
    name, vmdata = vm_and_data
    pin = thumbprint(served_certificate(vcsim_faults), algorithm, colons)
    env = trustless_env(vcsim_faults, REQUESTS_CA_BUNDLE="/nonexistent")  # the pin alone must do it
    args = []
    if how == "flag":
        args += ["--thumbprint", pin]
    else:
        known = tmp_path / "known_hosts"
        known.write_text(f"{vcsim_faults.host}:{vcsim_faults.port} {pin}\n")
        env["GOVC_TLS_KNOWN_HOSTS"] = str(known)
    _attach_and_check(vcsim_faults, vsphere, name, vmdata, args, env)
    tally.add("tls", f"accepted: pinned {algorithm} thumbprint", cases=1)


@pytest.mark.parametrize("how", ["--insecure", "GOVC_INSECURE=1"])
def test_accepted_with_the_insecure_switch(vcsim_faults: Vcsim, vsphere, vm_and_data, how: str, tally) -> None:
    name, vmdata = vm_and_data
    env = trustless_env(vcsim_faults, **({"GOVC_INSECURE": "1"} if how != "--insecure" else {}))
    args = ["--insecure"] if how == "--insecure" else []
    _attach_and_check(vcsim_faults, vsphere, name, vmdata, args, env)
    tally.add("tls", f"accepted: {how}", cases=1)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_refused_with_a_wrong_thumbprint(vcsim_faults: Vcsim, vm_and_data, algorithm: str, tally) -> None:
    name, vmdata = vm_and_data
    pin = wrong(thumbprint(served_certificate(vcsim_faults), algorithm))
    vcsim_faults.reset_faults()
    env = trustless_env(vcsim_faults, REQUESTS_CA_BUNDLE=vcsim_faults.ca_file)  # a CA that would trust it: no help
    run = cli_in_process(["attach", name, "--vmdata", str(vmdata), "--thumbprint", pin], env)
    assert run.status == 1 and len(run.err.splitlines()) == 1, run.err
    assert "thumbprint" in run.err and "--ca-file" in run.err
    assert vcsim_faults.counters()["soap_calls"] == 0
    tally.add("tls", f"refused: wrong {algorithm} thumbprint (SOAP)", cases=1)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    class Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            waits.append(seconds)

    monkeypatch.setattr(tenacity.nap, "time", Clock)
    return waits


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_a_pinned_session_pins_datastore_uploads(
    vcsim_faults: Vcsim, vsphere, monkeypatch: pytest.MonkeyPatch, no_backoff: list[float], algorithm: str, tally
) -> None:
    """The datastore HTTP client enforces the session's pin by itself: with the pin changed under a logged-in
    session (as if /folder were served by another certificate), the upload is refused at once (no retries),
    even with REQUESTS_CA_BUNDLE trusting the harness; with the right pin it works with no CA at all."""
    der = served_certificate(vcsim_faults)
    target = DatastorePath("LocalDS_0", f"tls-pin-{algorithm}.iso")
    with tool_session(vcsim_faults, ca_file=None, thumbprint=thumbprint(der, algorithm)) as s:
        dc = s.content.rootFolder.childEntity[0]
        files = DatastoreFiles(s, dc, "DC0")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent")
        files.upload(target, b"pinned upload")
        assert fetch_file(vcsim_faults, vsphere, str(target)) == b"pinned upload"

        s.settings.thumbprint = wrong(thumbprint(der, algorithm))
        s._local.__dict__.pop("http", None)  # the next transfer builds its HTTP client from the settings
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", vcsim_faults.ca_file)
        vcsim_faults.reset_faults()
        with pytest.raises(ConfigDriveError, match="TLS verification failed") as refused:
            files.upload(target.sibling("refused.iso"), b"must not arrive")
        assert "--thumbprint" in str(refused.value)
        assert no_backoff == []  # a refused certificate is not retried
        assert vcsim_faults.counters()["folder_requests"] == {}  # not one request reached the server
        assert vsphere_writes(vcsim_faults.counters()) == {}
    assert fetch_file(vcsim_faults, vsphere, str(target.sibling("refused.iso"))) is None
    tally.add("tls", f"pinned session pins uploads ({algorithm})", cases=2)


@pytest.mark.parametrize("how", ["--thumbprint", "--insecure"])
def test_no_tls_warning_on_stderr(vcsim_faults: Vcsim, vm_and_data, how: str) -> None:
    """The real CLI process: a pinned (verified) or explicitly insecure session prints no urllib3 warning."""
    name, vmdata = vm_and_data
    args = [how] + ([thumbprint(served_certificate(vcsim_faults), "sha256")] if how == "--thumbprint" else [])
    run = run_cli(["attach", name, "--vmdata", str(vmdata), *args, "--json"], trustless_env(vcsim_faults))
    assert run.status == 0 and run.err == "", run.err
    assert run.json()["changed"] is True

"""The cassette layer: scrubbing, matching, the replay network guard, and a record+replay round trip."""

from __future__ import annotations

import base64
import contextlib
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from cassette import (
    PASSWORD_PLACEHOLDER,
    RECORD,
    REPLAY,
    NetworkBlocked,
    ReplayTarget,
    Scrubber,
    block_network,
    cassette_dir,
    cassette_mode,
    find_secrets,
    soap_signature,
    use_cassette,
)
from fixtures_vsphere import VsphereCassettes
from pyVmomi import vim
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.request import Request
from vsphere_harness import Vcsim, connect, disconnect, download, make_directory, retrieve, upload

# Strings the recorded tests put on the wire and that must never reach a cassette.
VM_PASSWORD = "s3cret-VM-passw0rd!"
KNOWN_SECRETS = [VM_PASSWORD, "Replay-VM-Passw0rd"]  # the second: tests/test_operations_replay.py
DEFAULT_VMS = {"DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"}


def round_trip(target: Any) -> dict[str, Any]:
    """Connect, list VM names with one PropertyCollector call, upload a file and read it back."""
    si = connect(target)
    try:
        names = {row["name"] for row in retrieve(si, vim.VirtualMachine, ["name"])}
        make_directory(si, "[LocalDS_0] testbed-roundtrip")
        body = f"#cloud-config\npassword: {VM_PASSWORD}\n".encode()
        put = upload(target, si, "LocalDS_0", "testbed-roundtrip/user_data", body)
        got = download(target, si, "LocalDS_0", "testbed-roundtrip/user_data")
        return {"names": names, "put": put.status_code, "get": got.status_code, "body": got.content, "sent": body}
    finally:
        disconnect(si)


# ---------------------------------------------------------------------------------------------------------
# Replay of the committed cassette (no network, no Go, no vcsim)


@pytest.mark.replay
def test_round_trip_cassette(vsphere_cassettes: VsphereCassettes) -> None:
    with vsphere_cassettes.cassette("testbed_roundtrip", secrets=[VM_PASSWORD]) as rec:
        if rec.mode == REPLAY:
            assert socket.socket.connect.__name__ == "refuse"  # the guard is on while replaying
        result = round_trip(vsphere_cassettes.target)
    assert result["names"] >= DEFAULT_VMS
    assert (result["put"], result["get"]) == (200, 200)
    if rec.mode == RECORD:
        assert result["body"] == result["sent"]
    else:
        # Recorded downloads keep their length, with the registered secret masked.
        assert result["body"] == result["sent"].replace(VM_PASSWORD.encode(), b"*" * len(VM_PASSWORD))
    assert rec.path.exists()


@pytest.mark.replay
def test_replay_network_guard_refuses_real_connections() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        # Replaying, the autouse guard is already on; recording, put it on here.
        guard = block_network() if cassette_mode() == RECORD else contextlib.nullcontext()
        with guard, pytest.raises(NetworkBlocked):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    finally:
        server.close()


def test_network_guard_is_lifted_afterwards() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        with block_network(), pytest.raises(NetworkBlocked):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # works again
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------------------
# Secrets


def test_committed_cassettes_hold_no_secrets() -> None:
    files = sorted(cassette_dir().glob("*.yaml"))
    assert files, "no cassettes committed"
    problems = [p for f in files for p in find_secrets(f, KNOWN_SECRETS)]
    assert problems == []


def _write_cassette(path: Path, interactions: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "interactions": interactions}))
    return path


def _interaction(req_body: Any = None, resp_body: Any = None, req_headers=None, resp_headers=None) -> dict:  # type: ignore[no-untyped-def]
    return {
        "request": {"method": "POST", "uri": "https://vcsim.test/sdk", "body": req_body, "headers": req_headers or {}},
        "response": {
            "status": {"code": 200, "message": "OK"},
            "headers": resp_headers or {},
            "body": {"string": resp_body or ""},
        },
    }


def test_secret_scan_finds_planted_secrets(tmp_path: Path) -> None:
    leaks = [
        _interaction(req_body='<Login><userName>u</userName><password versionId="6.5">hunter2</password></Login>'),
        _interaction(req_headers={"Cookie": ['vmware_soap_session="52f0a1b2-0c3d-4e5f-8a9b-0c1d2e3f4a5b"']}),
        _interaction(resp_headers={"Set-Cookie": ["vmware_soap_session=0123456789abcdef0123456789abcdef; Path=/"]}),
        _interaction(resp_body="<LoginResponse><returnval><key>9b2e1c3d-aaaa-bbbb-cccc-0123456789ab</key></returnval>"),
        _interaction(req_headers={"Authorization": ["Basic dTpw"]}),
        _interaction(resp_body=b"\x00\x01 binary ISO with " + VM_PASSWORD.encode() + b" inside \xff"),
        _interaction(resp_body="<AcquireCloneTicketResponse><returnval>cst-VCT-52a8</returnval>"),
    ]
    for i, leak in enumerate(leaks):
        path = _write_cassette(tmp_path / f"leak{i}.yaml", [leak])
        assert find_secrets(path, KNOWN_SECRETS), f"leak {i} not detected"
    # The binary body is stored base64 in YAML: a plain text search would have missed it.
    assert VM_PASSWORD not in (tmp_path / "leak5.yaml").read_text()
    assert base64.b64encode(b"\x00\x01 binary").decode()[:8] in (tmp_path / "leak5.yaml").read_text()

    clean = _write_cassette(
        tmp_path / "clean.yaml",
        [
            _interaction(
                req_body=f"<Login><password>{PASSWORD_PLACEHOLDER}</password></Login>",
                req_headers={"Cookie": ["vmware_soap_session=scrubbed-session-1; HttpOnly"]},
                resp_body="<LoginResponse><returnval><key>scrubbed-session-1</key></returnval></LoginResponse>",
            )
        ],
    )
    assert find_secrets(clean, KNOWN_SECRETS) == []


# ---------------------------------------------------------------------------------------------------------
# Scrubbing and matching units


def test_scrubber_request_and_response() -> None:
    s = Scrubber()
    s.register_secret(VM_PASSWORD)
    login = Request(
        "POST",
        "https://127.0.0.1:40123/sdk",
        b'<Envelope><Body><Login><_this type="SessionManager">SessionManager</_this><userName>u</userName>'
        b'<password versionId="6.5">pw</password></Login></Body></Envelope>',
        {"Cookie": ""},
    )
    out = s.request(login)
    assert out.uri == "https://vcsim.test/sdk"
    assert b'<password versionId="6.5">SCRUBBED</password>' in out.body
    assert login.body.count(b">pw<") == 1  # the live request itself is left alone

    real = "8c0fe3a1-5f1e-4c55-9d1e-2f3a4b5c6d7e"
    resp = s.response(
        {
            "status": {"code": 200, "message": "OK"},
            "headers": {"Set-Cookie": [f"vmware_soap_session={real}; HttpOnly"], "Content-Length": ["60"]},
            "body": {"string": f"<LoginResponse><returnval><key>{real}</key></returnval>".encode()},
        }
    )
    assert resp["headers"]["Set-Cookie"] == ["vmware_soap_session=scrubbed-session-1; HttpOnly"]
    assert real.encode() not in resp["body"]["string"]
    assert resp["headers"]["Content-Length"] == [str(len(resp["body"]["string"]))]

    call = s.request(Request("POST", "https://127.0.0.1:1/sdk", b"<x/>", {"Cookie": f'vmware_soap_session="{real}"'}))
    assert call.headers["Cookie"] == 'vmware_soap_session="scrubbed-session-1"'

    iso = b"ISO\x00" + VM_PASSWORD.encode() + b"\x00end"
    put = s.request(Request("PUT", "https://127.0.0.1:1/folder/a/b.iso?dsName=LocalDS_0", iso, {}))
    assert put.body.startswith(b"sha256:") and len(put.body) == 7 + 64
    got = s.response({"status": {}, "headers": {"Content-Length": [str(len(iso))]}, "body": {"string": iso}})
    assert got["body"]["string"] == iso.replace(VM_PASSWORD.encode(), b"*" * len(VM_PASSWORD))
    assert got["headers"]["Content-Length"] == [str(len(iso))]

    assert s.request(Request("POST", "https://127.0.0.1:1/_harness/faults", b"{}", {})) is None


def _soap(op: str, inner: str) -> bytes:
    return (
        '<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        f'<{op} xmlns="urn:vim25">{inner}</{op}></soapenv:Body></soapenv:Envelope>'
    ).encode()


def test_soap_signature_keys_on_operation_and_references() -> None:
    pc = '<_this type="PropertyCollector">propertyCollector</_this>'
    a = _soap(
        "RetrievePropertiesEx", pc + '<specSet><obj type="VirtualMachine">vm-1</obj><pathSet>name</pathSet></specSet>'
    )
    b = _soap(
        "RetrievePropertiesEx", pc + '<specSet><obj type="VirtualMachine">vm-2</obj><pathSet>name</pathSet></specSet>'
    )
    c = _soap(
        "RetrievePropertiesEx", pc + '<specSet><obj type="VirtualMachine">vm-1</obj><pathSet>config</pathSet></specSet>'
    )
    assert soap_signature(a)[0] == "RetrievePropertiesEx"
    assert len({soap_signature(x) for x in (a, b, c)}) == 3
    # xsi:type attributes are data types, not references; values other than references don't matter.
    d = _soap("MakeDirectory", '<_this type="FileManager">FileManager</_this><name xsi:type="xsd:string">[ds] x</name>')
    e = _soap("MakeDirectory", '<_this type="FileManager">FileManager</_this><name xsi:type="xsd:string">[ds] y</name>')
    assert (
        soap_signature(d)
        == soap_signature(e)
        == ("MakeDirectory", (("_this", "FileManager", "FileManager"),), (), None)
    )


# ---------------------------------------------------------------------------------------------------------
# Record from the live harness, then replay the fresh cassette with the network blocked


@pytest.mark.live
def test_record_then_replay_round_trip(vcsim_faults: Vcsim, tmp_path: Path) -> None:
    with use_cassette("live_roundtrip", RECORD, secrets=[VM_PASSWORD, vcsim_faults.password], directory=tmp_path):
        recorded = round_trip(vcsim_faults)
    assert recorded["body"] == recorded["sent"]
    path = tmp_path / "live_roundtrip.yaml"
    text = path.read_text()
    assert find_secrets(path, [VM_PASSWORD, vcsim_faults.password]) == []
    assert str(vcsim_faults.port) not in text and "vcsim.test" in text

    with block_network(), use_cassette("live_roundtrip", REPLAY, directory=tmp_path) as rec:
        replayed = round_trip(ReplayTarget())
    assert rec.cassette.all_played
    assert replayed["names"] == recorded["names"]
    assert (replayed["put"], replayed["get"]) == (200, 200)
    assert len(replayed["body"]) == len(recorded["body"]) and VM_PASSWORD.encode() not in replayed["body"]

    # A call the recording never saw is refused rather than sent, and the cassette is left as it was.
    saved = path.read_bytes()
    with block_network(), use_cassette("live_roundtrip", REPLAY, directory=tmp_path, require_all_played=False):
        si = connect(ReplayTarget())
        with pytest.raises(CannotOverwriteExistingCassetteException):
            si.content.rootFolder.childEntity  # noqa: B018 - a property read is a SOAP call
    assert path.read_bytes() == saved


def test_a_nocloud_seeds_password_in_a_base64_mime_part_is_found_and_scrubbed(tmp_path: Path) -> None:
    """A NoCloud seed downloaded (update's GET of the ISO) carries the password only inside vendor-data's base64
    MIME part: the scan must find it there, and the scrubber mask it in place (same length: the ISO still reads)."""
    from esxi_configdrive.iso import read_drive, tree_to_iso
    from esxi_configdrive.transport import Transport, build_drive_tree
    from esxi_configdrive.vmdata import VmData

    data = VmData.from_object({"metadata": {"vm-id": "seed-1", "local-hostname": "seed"}, "password": VM_PASSWORD})
    iso = tree_to_iso(build_drive_tree(data, Transport.NOCLOUD, max_userdata_bytes=None))
    assert VM_PASSWORD.encode() not in iso  # not in plain form: only a decoder reaches it
    interaction = {
        "request": {"method": "GET", "uri": "https://vcsim.test/folder/ConfigDrive/seed.iso", "body": None},
        "response": {"status": {"code": 200}, "headers": {}, "body": {"string": iso}},
    }
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump({"interactions": [interaction]}))
    assert find_secrets(path, KNOWN_SECRETS) != []  # the scan sees through the MIME part
    s = Scrubber()
    s.register_secret(VM_PASSWORD)
    scrubbed = s.response(interaction["response"])["body"]["string"]
    path.write_text(yaml.safe_dump({"interactions": [interaction]}))
    assert find_secrets(path, KNOWN_SECRETS) == []
    assert len(scrubbed) == len(iso)
    transport, back = read_drive(scrubbed)
    assert transport is Transport.NOCLOUD and back.hostname == "seed"

"""The guestinfo transport replayed from a cassette recorded against vcsim (``scripts/record-cassettes -k
guestinfo``): attach on a running VM, the unchanged re-run, an update, status, a password sent when asked for,
detach and remove, through the command line. The cassette is scrubbed of the password in every form, also inside
the guestinfo vendor data that carries it gzip+base64-encoded (tests/cassette.py ``reveals``); test_secrets.py
scans it with the others. The password goes last (a replayed read gives the scrubbed value back)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_operations_replay import REPLAY_PASSWORD, data

from esxi_configdrive.cli import main

pytestmark = pytest.mark.replay

VM = "DC0_H0_VM0"  # powered on in vcsim's default inventory


def test_guestinfo_on_a_running_vm_through_the_command_line(vsphere_cassettes, tmp_path, monkeypatch, capsys) -> None:
    target = vsphere_cassettes.target
    (tmp_path / "vm.json").write_text(json.dumps(data().to_dict()))
    (tmp_path / "pw").write_text(REPLAY_PASSWORD + "\n")
    monkeypatch.setenv("GOVC_URL", target.url)
    monkeypatch.setenv("GOVC_USERNAME", target.username)
    monkeypatch.setenv("GOVC_PASSWORD", target.password)
    if target.ca_file:
        monkeypatch.setenv("GOVC_TLS_CA_CERTS", target.ca_file)
    said: list[str] = []

    def cli(*args: str) -> dict[str, Any]:
        status = main([*args, "--json"])
        out = capsys.readouterr()
        said.append(out.out + out.err)
        assert status == 0, out
        return json.loads(out.out)

    attach = ("attach", VM, "--vmdata", str(tmp_path / "vm.json"), "--transport", "guestinfo")
    with vsphere_cassettes.cassette("ops_guestinfo", secrets=[REPLAY_PASSWORD]):
        first = cli(*attach)
        assert first["changed"] and first["transport"] == "guestinfo"
        assert first["actions"] == ["wrote guestinfo keys guestinfo.metadata, guestinfo.userdata"]
        assert cli(*attach)["changed"] is False
        assert cli("update", VM, "--hostname", "replayed-2")["actions"] == ["wrote guestinfo keys guestinfo.metadata"]
        status = cli("status", VM)
        assert status["transport"] == "guestinfo" and status["keys"]["guestinfo.metadata"]["state"] == "as-written"
        secret = cli("update", VM, "--password-file", str(tmp_path / "pw"), "--guestinfo-password")
        assert secret["changed"] and "vCenter" in secret["warnings"][0]
        assert cli("detach", VM)["changed"]
        assert cli("remove", VM)["changed"] is False  # nothing left
    assert not any(REPLAY_PASSWORD in text for text in said)


def test_the_scan_finds_a_password_inside_guestinfo_and_the_scrubber_removes_it(tmp_path) -> None:
    """Without the scrubbing the cassette above would hold the password: gzip+base64 of a MIME message whose
    parts are base64 (not any of its plain, base64 or gzip+base64 forms)."""
    import yaml
    from cassette import Scrubber, encoded_forms, find_secrets

    from esxi_configdrive.guestinfo import guestinfo_keys

    value = guestinfo_keys(data(password=REPLAY_PASSWORD), password=True)["guestinfo.vendordata"]
    assert not any(form in value for form in [REPLAY_PASSWORD, *encoded_forms(REPLAY_PASSWORD)])
    body = f'<extraConfig><key>guestinfo.vendordata</key><value xsi:type="xsd:string">{value}</value></extraConfig>'
    interaction = {"request": {"method": "POST", "uri": "https://vcsim.test/sdk", "body": body, "headers": {}},
                   "response": {"status": {"code": 200}, "headers": {}, "body": {"string": ""}}}  # fmt: skip
    raw = tmp_path / "raw.yaml"
    raw.write_text(yaml.safe_dump({"interactions": [interaction]}))
    assert find_secrets(raw, [REPLAY_PASSWORD]) != []
    scrubber = Scrubber()
    scrubber.register_secret(REPLAY_PASSWORD)
    interaction["request"]["body"] = scrubber._mask(body.encode()).decode()
    raw.write_text(yaml.safe_dump({"interactions": [interaction]}))
    assert find_secrets(raw, [REPLAY_PASSWORD]) == [] and "SCRUBBED" in interaction["request"]["body"]

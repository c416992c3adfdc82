"""The guestinfo transport live on vcsim (the session harness, counting every request): attach on a running VM (one
ReconfigVM, no upload, no CD-ROM, still running), an unchanged re-run (no write), update (only the changed key),
status, audit (a key changed behind the tool's back: foreign-change), detach, remove; the moves from and to a
config drive (one ReconfigVM each, one transport left); a password refused unless asked for, and searched for in
every output in plain, base64 and gzip+base64 form; a batch of 200 at concurrency 8 at most 1.3 requests per VM.
Stock vcsim appends extraConfig entries instead of replacing them: the tool reads the last (test_stock_vcsim.py)."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from sample_data import ED25519_KEY
from test_audit_live import started
from test_batch_live import env_for, run_cli
from test_transport_live import batch, requests_of
from tool_fixtures import fetch_file, record_of, settings_for
from vsphere_harness import get_property, set_extra_config

from esxi_configdrive import guestinfo
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.guestinfo import gzip_bytes, read_keys
from esxi_configdrive.vsphere.connection import Session

pytestmark = pytest.mark.live

PASSWORD = "Guestinfo-Live-pw-1"
NETWORK = {"interfaces": [{"addresses": ["192.0.2.41/24"], "gateway4": "192.0.2.1"}], "dns": ["192.0.2.53"]}


def vmdata(name: str, password: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"local-hostname": name, "public-keys": [ED25519_KEY]},
        "userdata": "#cloud-config\nruncmd: [[sh, -c, 'echo guestinfo']]\n",
        "network": NETWORK,
        **({"password": PASSWORD} if password else {}),
    }


def secret_forms(secret: str) -> list[str]:
    """The password as it could leak: plain, base64, gzip+base64 (the encodings guestinfo uses)."""
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), base64.b64encode(gzip_bytes(raw)).decode()]


def keys_on(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> dict[str, str]:
    """The VM's guestinfo keys as vSphere holds them (the last entry of a key, "" dropped)."""
    values: dict[str, str] = {}
    for option in get_property(si, vm, "config.extraConfig") or []:
        if option.key.startswith(guestinfo.PREFIX):
            values[option.key] = option.value
    return {k: v for k, v in values.items() if v}


def cli(sim: Any, args: list[str], monkeypatch: Any, capsys: Any) -> tuple[int, dict[str, Any], dict[str, int]]:
    """One command's result (an audit's: its rows, under "findings") and the requests it made."""
    sim.reset_faults()  # counters to zero
    status, results = run_cli(sim, [*args, "--json"], monkeypatch, capsys)
    result = {"findings": results} if args[0] == "audit" else (results[0] if results else {})
    return status, result, requests_of(sim)


def test_guestinfo_lifecycle_on_a_running_vm(vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys) -> None:
    vm = make_vm(powered_on=True)
    (tmp_path / "vm.json").write_text(json.dumps(vmdata(vm.name)))
    attach = ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json"), "--transport", "guestinfo"]

    status, result, calls = cli(vcsim_faults, attach, monkeypatch, capsys)
    assert status == 0 and result["changed"] is True and result["transport"] == "guestinfo"
    assert calls.get("ReconfigVM_Task") == 1 and not any(k.startswith("HTTP") for k in calls)  # no upload
    assert get_property(vsphere, vm, "runtime.powerState") == "poweredOn"
    assert not [c for c in vm.config.hardware.device if "ConfigDrive/" in str(getattr(c.backing, "fileName", ""))]
    keys = keys_on(vsphere, vm)
    assert set(keys) >= {"guestinfo.metadata", "guestinfo.userdata"}
    data = read_keys(keys)
    assert data.hostname == vm.name and data.public_keys == [ED25519_KEY]
    assert data.network is not None and data.network["interfaces"][0]["mac"]  # the VM's NIC filled in
    record = record_of(vsphere, vm)
    assert record["transport"] == "guestinfo" and record["owner"] == vm.config.instanceUuid and "iso" not in record

    status, again, calls = cli(vcsim_faults, attach, monkeypatch, capsys)
    assert status == 0 and again["changed"] is False and "ReconfigVM_Task" not in calls  # unchanged: no write

    before = keys_on(vsphere, vm)
    status, updated, calls = cli(vcsim_faults, ["update", vm.name, "--hostname", "renamed"], monkeypatch, capsys)
    assert status == 0 and updated["changed"] is True and calls.get("ReconfigVM_Task") == 1
    after = keys_on(vsphere, vm)
    assert after["guestinfo.userdata"] == before["guestinfo.userdata"] and read_keys(after).hostname == "renamed"
    assert updated["actions"] == ["wrote guestinfo keys guestinfo.metadata"]  # only what changed

    status, shown, _ = cli(vcsim_faults, ["status", vm.name], monkeypatch, capsys)
    assert status == 0 and shown["transport"] == "guestinfo"
    assert {v["state"] for v in shown["keys"].values()} <= {"as-written", "unset"}
    assert after["guestinfo.userdata"] not in json.dumps(shown)  # sizes and states, never a value

    set_extra_config(vsphere, vm, {"guestinfo.userdata": "#cloud-config\nruncmd: [[sh, -c, 'echo someone']]"})
    status, audited, _ = cli(vcsim_faults, ["audit"], monkeypatch, capsys)
    rows = [r for r in audited.get("findings", []) if r["vm"] == vm.name]
    assert rows and rows[0]["state"] == "foreign-change" and "guestinfo.userdata" in rows[0]["notes"][0]
    status, shown, _ = cli(vcsim_faults, ["status", vm.name], monkeypatch, capsys)
    assert shown["keys"]["guestinfo.userdata"]["state"] == "changed"

    for command in ("detach", "remove"):
        status, gone, calls = cli(vcsim_faults, [command, vm.name], monkeypatch, capsys)
        assert status == 0 and gone["transport"] == "guestinfo"
        assert calls.get("ReconfigVM_Task") == 1 and not any(k.startswith("HTTP") for k in calls)
        assert keys_on(vsphere, vm) == {} and record_of(vsphere, vm) == {}
        if command == "detach":
            cli(vcsim_faults, attach, monkeypatch, capsys)  # attach again, for remove


def test_a_password_only_when_asked_for_and_never_in_any_output(
    vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys, caplog
) -> None:
    vm = make_vm(powered_on=True)
    (tmp_path / "vm.json").write_text(json.dumps(vmdata(vm.name, password=True)))
    attach = ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json"), "--transport", "guestinfo"]
    status, refused, calls = cli(vcsim_faults, attach, monkeypatch, capsys)
    assert status == 2 and "ReconfigVM_Task" not in calls and keys_on(vsphere, vm) == {}
    status, result, calls = cli(vcsim_faults, [*attach, "--guestinfo-password"], monkeypatch, capsys)
    assert status == 0 and calls.get("ReconfigVM_Task") == 1
    (warning,) = result["warnings"]
    assert "vCenter" in warning and "process in the guest" in warning and "guestinfo.vendordata" in warning
    keys = keys_on(vsphere, vm)
    meta = json.loads(guestinfo.decode(keys["guestinfo.metadata"], keys.get("guestinfo.metadata.encoding", "")))
    assert meta["redact"] == ["vendordata"]  # cloud-init blanks it once read
    assert "guestinfo.vendordata=" not in record_of(vsphere, vm)["keys"]  # no digest of the password's key
    status, shown, _ = cli(vcsim_faults, ["status", vm.name], monkeypatch, capsys)
    status, audited, _ = cli(vcsim_faults, ["audit"], monkeypatch, capsys)
    said = json.dumps([refused, result, shown, audited]) + caplog.text
    assert not any(form in said for form in secret_forms(PASSWORD))


def test_moves_between_a_config_drive_and_guestinfo(vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys):
    vm = make_vm(powered_on=False)
    (tmp_path / "vm.json").write_text(json.dumps(vmdata(vm.name)))
    status, drive, _ = cli(
        vcsim_faults, ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json")], monkeypatch, capsys
    )
    assert status == 0
    status, _, calls = cli(vcsim_faults, ["update", vm.name, "--transport", "guestinfo"], monkeypatch, capsys)
    assert status == 0, capsys.readouterr().err
    assert calls.get("ReconfigVM_Task") == 1 and calls.get("DeleteDatastoreFile_Task") == 1
    assert fetch_file(vcsim_faults, vsphere, drive["iso"]) is None  # the ISO went after the reconfigure
    assert not [c for c in vm.config.hardware.device if "ConfigDrive/" in str(getattr(c.backing, "fileName", ""))]
    assert read_keys(keys_on(vsphere, vm)).hostname == vm.name and record_of(vsphere, vm)["transport"] == "guestinfo"
    status, again, calls = cli(vcsim_faults, ["update", vm.name, "--transport", "guestinfo"], monkeypatch, capsys)
    assert status == 0 and again["changed"] is False  # once moved: nothing to write, nothing to delete
    assert "ReconfigVM_Task" not in calls and "DeleteDatastoreFile_Task" not in calls
    status, back, calls = cli(vcsim_faults, ["update", vm.name, "--transport", "configdrive"], monkeypatch, capsys)
    assert status == 0 and calls.get("ReconfigVM_Task") == 1
    assert keys_on(vsphere, vm) == {} and record_of(vsphere, vm).get("transport", "") == ""  # keys cleared with it
    assert fetch_file(vcsim_faults, vsphere, back["iso"])


def test_a_batch_of_200_guestinfo_lines_at_most_1_3_requests_per_vm(vcsim_binary: Path) -> None:
    sim = started(vcsim_binary, vms=100)
    try:
        with Session(settings_for(sim)) as session:
            names = sorted(ConfigDriveController(session).name_index())  # the tool's own read of every name
        assert len(names) == 200
        env = env_for(sim)
        with tempfile.TemporaryDirectory() as tmp:
            attach = [
                {"vm": n, "vmdata": {"metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}",
                 "local-hostname": f"node-{i}"}, "userdata": "#cloud-config\n"}, "transport": "guestinfo"}
                for i, n in enumerate(names)
            ]  # fmt: skip
            attach_per_vm = batch("attach", attach, env, sim, Path(tmp))
            reconfigures = sim.counters()["soap_by_method"]["ReconfigVM_Task"]
            again_per_vm = batch("attach", attach, env, sim, Path(tmp))
            again_reconfigures = sim.counters()["soap_by_method"].get("ReconfigVM_Task", 0)
            rename = [{"vm": n, "hostname": f"renamed-{i}"} for i, n in enumerate(names)]
            update_per_vm = batch("update", rename, env, sim, Path(tmp))
            remove_per_vm = batch("remove", [{"vm": n} for n in names], env, sim, Path(tmp))
    finally:
        sim.stop()
    print(
        f"guestinfo batch of 200 at concurrency 8, requests per VM: attach {attach_per_vm:.3f}, unchanged "
        f"{again_per_vm:.3f}, update {update_per_vm:.3f}, remove {remove_per_vm:.3f}"
    )
    assert reconfigures == 200 and again_reconfigures == 0
    assert attach_per_vm <= 1.3 and update_per_vm <= 1.3 and remove_per_vm <= 1.3
    assert again_per_vm < 0.3  # the shared reads only

"""Where the three transports meet, live on vcsim: a batch mixing NoCloud and guestinfo lines (a password over
guestinfo without the opt-in refused for its VM, nothing changed on it, the other lines done); update's
ContentChange moving an ISO VM to guestinfo; a --label on a guestinfo VM refused; the password searched for in
every form in every output."""

from __future__ import annotations

import json

import pytest
from test_batch_live import run_cli
from test_guestinfo_live import PASSWORD, cli, keys_on, secret_forms
from test_guestinfo_live import vmdata as guestinfo_vmdata
from tool_fixtures import record_of

from esxi_configdrive.guestinfo import read_keys

pytestmark = pytest.mark.live


def test_a_mixed_batch_refuses_only_the_password_line_without_the_opt_in(
    vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys
):
    vms = [make_vm() for _ in range(5)]
    # vms[4] is a guestinfo VM already: its update line without transport keeps guestinfo and needs the opt-in too
    (tmp_path / "g.json").write_text(json.dumps(guestinfo_vmdata(vms[4].name)))
    attach = ["attach", vms[4].name, "--vmdata", str(tmp_path / "g.json"), "--transport", "guestinfo"]
    assert cli(vcsim_faults, attach, monkeypatch, capsys)[0] == 0
    keys_before = keys_on(vsphere, vms[4])
    lines = [
        {"vm": vms[0].name, "vmdata": guestinfo_vmdata(vms[0].name, password=True), "transport": "nocloud"},
        {"vm": vms[1].name, "vmdata": guestinfo_vmdata(vms[1].name), "transport": "guestinfo"},
        {"vm": vms[2].name, "vmdata": guestinfo_vmdata(vms[2].name, password=True), "transport": "guestinfo"},
        {"vm": vms[3].name, "vmdata": guestinfo_vmdata(vms[3].name, password=True), "transport": "guestinfo",
         "guestinfo_password": True},
    ]  # fmt: skip
    (tmp_path / "attach.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    status, results = run_cli(vcsim_faults, ["attach", "--batch", str(tmp_path / "attach.jsonl")], monkeypatch, capsys)
    out = json.dumps(results) + capsys.readouterr().err
    by_vm = {r["vm"]: r for r in results}
    assert status == 2 and len(results) == 4, results
    assert by_vm[vms[0].name]["transport"] == "nocloud" and by_vm[vms[1].name]["transport"] == "guestinfo"
    refused = by_vm[vms[2].name]
    assert refused["exit_status"] == 2 and refused["changed"] is False and "--guestinfo-password" in refused["error"]
    assert keys_on(vsphere, vms[2]) == {} and record_of(vsphere, vms[2]) == {}  # nothing changed on it
    assert by_vm[vms[3].name]["changed"] is True and keys_on(vsphere, vms[3])
    (tmp_path / "update.jsonl").write_text(json.dumps({"vm": vms[4].name, "password": PASSWORD}) + "\n")
    status, (updated,) = run_cli(
        vcsim_faults, ["update", "--batch", str(tmp_path / "update.jsonl")], monkeypatch, capsys
    )
    assert status == 2 and "--guestinfo-password" in updated["error"], updated
    assert keys_on(vsphere, vms[4]) == keys_before
    out += json.dumps(updated) + capsys.readouterr().err
    assert not any(form in out for form in secret_forms(PASSWORD))


def test_update_moves_an_iso_vm_to_guestinfo_with_a_change(
    vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys
):
    vm = make_vm()
    (tmp_path / "vm.json").write_text(json.dumps(guestinfo_vmdata(vm.name)))
    assert cli(vcsim_faults, ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json"), "--transport", "nocloud"],
               monkeypatch, capsys)[0] == 0  # fmt: skip
    iso = record_of(vsphere, vm)["iso"]
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    move = ["update", vm.name, "--transport", "guestinfo", "--hostname", "moved"]
    # a password with the move, without the opt-in: refused before anything is changed
    status, refused, calls = cli(vcsim_faults, [*move, "--password-file", str(tmp_path / "pw")], monkeypatch, capsys)
    assert status == 2 and "--guestinfo-password" in refused["error"] and calls.get("ReconfigVM_Task", 0) == 0
    assert record_of(vsphere, vm)["iso"] == iso and keys_on(vsphere, vm) == {}
    # a label on the move: refused (guestinfo has none)
    status, refused, calls = cli(vcsim_faults, [*move, "--label", "config-2"], monkeypatch, capsys)
    assert status == 2 and "no label" in refused["error"] and not calls.get("ReconfigVM_Task")
    status, moved, calls = cli(vcsim_faults, move, monkeypatch, capsys)
    assert status == 0 and moved["transport"] == "guestinfo" and calls.get("ReconfigVM_Task") == 1, moved
    assert read_keys(keys_on(vsphere, vm)).hostname == "moved" and "iso" not in record_of(vsphere, vm)
    # an update of the guestinfo VM with --label: refused, nothing changed
    keys = keys_on(vsphere, vm)
    status, refused, calls = cli(vcsim_faults, ["update", vm.name, "--label", "MYDRIVE"], monkeypatch, capsys)
    assert status == 2 and "no label" in refused["error"] and not calls.get("ReconfigVM_Task"), refused
    assert keys_on(vsphere, vm) == keys


def test_prepare_migration_of_a_nocloud_seed_and_of_guestinfo(tool, vcsim_faults, vsphere, make_vm):
    from tool_fixtures import fetch_file
    from vsphere_harness import create_local_datastore, hosts_seeing

    from esxi_configdrive import VmData
    from esxi_configdrive.iso import read_drive
    from esxi_configdrive.transport import Transport
    from esxi_configdrive.vsphere_values import DatastorePath

    name = f"OnlyH0n-{id(make_vm) % 10000}"
    create_local_datastore(vsphere, "DC0_C0_H0", name)
    seed_vm = make_vm(host="DC0_C0_H0")
    old = tool.attach(seed_vm.name, VmData.from_object(guestinfo_vmdata(seed_vm.name)), datastore=name,
                      transport="nocloud").iso  # fmt: skip
    moved = tool.prepare_migration(seed_vm.name, "DC0_C0_H1")
    assert moved.changed and "DC0_C0_H1" in hosts_seeing(vsphere, DatastorePath.parse(moved.iso).datastore)
    assert read_drive(fetch_file(vcsim_faults, vsphere, moved.iso) or b"")[0] is Transport.NOCLOUD
    assert record_of(vsphere, seed_vm)["transport"] == "nocloud" and fetch_file(vcsim_faults, vsphere, old) is None
    assert tool.status(seed_vm.name).to_dict()["transport"] == "nocloud"

    keys_vm = make_vm(powered_on=True)
    tool.attach(keys_vm.name, VmData.from_object(guestinfo_vmdata(keys_vm.name)), transport="guestinfo")
    vcsim_faults.reset_faults()
    result = tool.prepare_migration(keys_vm.name, "DC0_C0_H1").to_dict()
    assert result["changed"] is False and not vcsim_faults.counters()["soap_by_method"].get("ReconfigVM_Task")
    assert any("guestinfo" in a and "nothing to move" in a for a in result["actions"]), result


def test_audit_fix_gives_a_nocloud_vm_its_seed_back(tool, vcsim_faults, vsphere, make_vm):
    from pyVmomi import vim
    from test_audit_live import our_cdrom
    from vsphere_harness import reconfigure

    from esxi_configdrive import VmData

    vm = make_vm()
    attached = tool.attach(vm.name, VmData.from_object(guestinfo_vmdata(vm.name)), transport="nocloud")
    removed = our_cdrom(vm)  # another tool removes the CD-ROM behind this one's back
    reconfigure(vsphere, vm, vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="remove", device=removed)]))  # fmt: skip
    (row,) = [f for f in tool.audit().findings if f.vm == vm.name]
    assert row.state == "device-removed" and row.transport.value == "nocloud" and row.fix == "reattach"
    tool.audit(fix=True)
    (row,) = [f for f in tool.audit().findings if f.vm == vm.name]
    assert row.state == "ok" and row.transport.value == "nocloud", row.to_dict()
    assert record_of(vsphere, vm)["transport"] == "nocloud" and our_cdrom(vm).backing.fileName == attached.iso
    assert tool.status(vm.name).to_dict()["transport"] == "nocloud"

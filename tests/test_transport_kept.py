"""attach without --transport keeps the drive's own transport (configdrive for a new drive), as update does: an
idempotent re-run of a plain attach (or Ansible's state=present without ``transport:``) on a NoCloud or guestinfo
VM changes nothing, live on vcsim (the session harness, counting every request)."""

from __future__ import annotations

import json

import pytest
from test_guestinfo_live import cli, keys_on
from test_guestinfo_live import vmdata as guestinfo_vmdata
from tool_fixtures import record_of

pytestmark = pytest.mark.live


@pytest.mark.parametrize("transport", ["nocloud", "guestinfo"])
def test_a_plain_attach_keeps_the_drives_transport(
    transport, vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys
):
    vm = make_vm(powered_on=True)
    (tmp_path / "vm.json").write_text(json.dumps(guestinfo_vmdata(vm.name)))
    attach = ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json")]
    status, first, _ = cli(vcsim_faults, [*attach, "--transport", transport], monkeypatch, capsys)
    assert status == 0 and first["transport"] == transport
    keys = keys_on(vsphere, vm)
    status, again, calls = cli(vcsim_faults, attach, monkeypatch, capsys)  # no --transport: an idempotent re-run
    assert status == 0 and again["changed"] is False, again
    assert calls.get("ReconfigVM_Task", 0) == 0 and "HTTP PUT" not in calls, calls  # no reconfigure, no upload
    assert again["transport"] == transport and record_of(vsphere, vm)["transport"] == transport
    assert keys_on(vsphere, vm) == keys


def test_a_plain_attach_of_a_new_drive_is_a_config_drive(vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys):
    vm = make_vm()
    (tmp_path / "vm.json").write_text(json.dumps(guestinfo_vmdata(vm.name)))
    status, first, _ = cli(
        vcsim_faults, ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json")], monkeypatch, capsys
    )
    assert status == 0 and first["changed"] is True and "transport" not in first
    assert record_of(vsphere, vm).get("transport", "") == ""


def test_a_plain_attach_with_a_label_on_guestinfo_is_refused(
    vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys
):
    vm = make_vm()
    (tmp_path / "vm.json").write_text(json.dumps(guestinfo_vmdata(vm.name)))
    attach = ["attach", vm.name, "--vmdata", str(tmp_path / "vm.json")]
    assert cli(vcsim_faults, [*attach, "--transport", "guestinfo"], monkeypatch, capsys)[0] == 0
    keys = keys_on(vsphere, vm)
    status, refused, calls = cli(vcsim_faults, [*attach, "--label", "MYDRIVE"], monkeypatch, capsys)
    assert status == 2 and "guestinfo keys have no label" in json.dumps(refused), refused
    assert "ReconfigVM_Task" not in calls and keys_on(vsphere, vm) == keys, calls

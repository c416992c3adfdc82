"""The guestinfo transport's operations (drive/keys.py) on the stand-in VM (tests/drive_fake.py): what is written,
in how many reconfigures, and what a dry run predicts. The same against vcsim: tests/test_guestinfo_live.py."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest
from drive_fake import FakeVsphereVm
from test_drive_operations import POLICY, Operation, attach_op, attached, detach_op, run, update_op, vmdata

from esxi_configdrive import guestinfo
from esxi_configdrive.drive import audit_judge
from esxi_configdrive.drive.effects import Kind
from esxi_configdrive.drive.keys import AS_WRITTEN, CHANGED, GUESTINFO, REDACTED, key_states
from esxi_configdrive.drive.state import DriveState
from esxi_configdrive.drive.status import status
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.record import PREFIX, DriveRecord
from esxi_configdrive.transport import Transport
from esxi_configdrive.vsphere_values import Fleet, RemoveDevice

PASSWORD = "gi-0per-Passw0rd-9"
NETWORK = {"interfaces": [{"addresses": ["10.1.2.3/24"], "gateway4": "10.1.2.1"}], "dns": ["10.1.0.2"]}


def keys_op(data: Any = None, **request: Any) -> Operation:
    return attach_op(data, transport=Transport.GUESTINFO, **request)


def reconfigures(vm: FakeVsphereVm) -> list[dict[str, str]]:
    return [extra for kind, (devices, extra) in vm.calls("reconfigure")]


def with_keys(**vm: Any) -> FakeVsphereVm:
    fake = FakeVsphereVm(**vm)
    run(fake, keys_op(vmdata(network=NETWORK)))
    fake.log.clear()
    return fake


def test_attach_writes_the_keys_and_the_record_in_one_reconfigure_on_a_running_vm() -> None:
    vm = FakeVsphereVm(powered_on=True)
    result = run(vm, keys_op(vmdata(network=NETWORK)))
    assert vm.calls() == vm.calls("reconfigure") and len(reconfigures(vm)) == 1  # no upload, no folder, no device
    extra = reconfigures(vm)[0]
    assert extra[PREFIX + "transport"] == GUESTINFO and extra[PREFIX + "owner"] == vm.instance_uuid
    assert guestinfo.key("metadata") in extra and guestinfo.key("userdata") in extra
    assert guestinfo.key("vendordata") not in extra  # "" already: not written
    assert vm.powered_on and vm.our_cdrom() is None
    assert result.actions == ["wrote guestinfo keys guestinfo.metadata, guestinfo.userdata"]
    meta = guestinfo.read_keys(vm.extra_config)
    assert meta.hostname == "web-1" and meta.network is not None  # what was written reads back


def test_the_same_data_again_writes_nothing() -> None:
    vm = with_keys()
    again = run(vm, keys_op(vmdata(network=NETWORK)))
    assert again.changed is False and vm.calls() == [] and again.actions == []


def test_an_update_rewrites_only_what_changed() -> None:
    vm = with_keys()
    before = dict(vm.extra_config)
    result = run(vm, update_op(hostname="web-2"))
    [extra] = reconfigures(vm)
    assert set(extra) - {k for k in extra if k.startswith(PREFIX)} == {guestinfo.key("metadata")}
    assert vm.extra_config[guestinfo.key("userdata")] == before[guestinfo.key("userdata")]
    assert guestinfo.read_keys(vm.extra_config).hostname == "web-2"
    assert guestinfo.read_keys(vm.extra_config).network == guestinfo.read_keys(before).network  # kept
    assert result.actions == ["wrote guestinfo keys guestinfo.metadata"]


def test_detach_and_remove_clear_the_keys_and_the_record() -> None:
    for remove in (False, True):
        vm = with_keys()
        result = run(vm, detach_op(remove=remove))
        assert len(reconfigures(vm)) == 1 and vm.calls() == vm.calls("reconfigure")
        assert not any(k.startswith((guestinfo.PREFIX, PREFIX)) for k in vm.extra_config)
        assert result.actions == ["removed guestinfo keys guestinfo.metadata, guestinfo.userdata"]
        assert run(vm, detach_op(remove=remove)).changed is False  # again: nothing to do


def test_status_shows_the_transport_and_each_keys_state_never_a_value() -> None:
    vm = with_keys()
    out = status(vm).extra
    assert out["transport"] == GUESTINFO
    assert out["keys"][guestinfo.key("metadata")]["state"] == AS_WRITTEN
    assert out["keys"][guestinfo.key("vendordata")] == {"state": "unset", "bytes": 0}
    assert vm.extra_config[guestinfo.key("userdata")] not in repr(out)
    vm.extra_config[guestinfo.key("userdata")] = "#cloud-config\nruncmd: [evil]"
    assert status(vm).extra["keys"][guestinfo.key("userdata")]["state"] == CHANGED


def fleet_of(vm: FakeVsphereVm) -> Fleet:
    return Fleet("DC0", (vm.facts(),), {}, False, {}, {}, {}, {}, 0.0)


def test_audit_flags_a_key_changed_behind_the_tools_back() -> None:
    vm = with_keys()
    assert audit_judge.judge(fleet_of(vm))[0].state == audit_judge.OK
    vm.extra_config[guestinfo.key("metadata")] = base64.b64encode(b'{"instance-id":"x"}').decode()
    [row] = audit_judge.judge(fleet_of(vm))
    assert row.state == audit_judge.FOREIGN_CHANGE and "guestinfo.metadata" in row.notes[0] and row.attention
    del vm.extra_config[guestinfo.key("metadata")]  # removed behind our back: the same
    assert audit_judge.judge(fleet_of(vm))[0].state == audit_judge.FOREIGN_CHANGE


@pytest.mark.parametrize("case", ["attach", "attach again other", "update", "detach", "move from ISO", "move back"])
def test_a_dry_run_lists_exactly_the_effects_the_real_run_makes(case: str) -> None:
    make, operation = {
        "attach": (FakeVsphereVm, keys_op()),
        "attach again other": (with_keys, keys_op(vmdata(userdata="#cloud-config\n# v2\n"))),
        "update": (with_keys, update_op(public_keys=())),
        "detach": (with_keys, detach_op()),
        "move from ISO": (attached, keys_op()),
        "move back": (with_keys, attach_op()),
    }[case]
    planned_vm, real_vm = make(), make()
    planned = run(planned_vm, operation, dry_run=True)
    assert planned_vm.calls() == []
    real = run(real_vm, operation)
    assert [(s.kind, s.target) for s in planned.steps] == [(s.kind, s.target) for s in real.steps]
    assert planned.changed == real.changed is True


def test_a_password_is_refused_unless_asked_for_and_then_redacted() -> None:
    vm = FakeVsphereVm()
    with pytest.raises(ValidationError, match="--guestinfo-password") as refused:
        run(vm, keys_op(vmdata(password=PASSWORD)))
    assert PASSWORD not in str(refused.value) and vm.calls() == []
    result = run(vm, keys_op(vmdata(password=PASSWORD), guestinfo_password=True))
    record = DriveRecord.from_extra_config(vm.extra_config)
    assert record.redact == "vendordata" and "guestinfo.vendordata=" not in record.keys  # no digest of the secret
    assert "vCenter" in result.extra["warnings"][0] and "guest" in result.extra["warnings"][0]
    assert PASSWORD not in repr(result.to_dict())
    vm.extra_config[guestinfo.key("vendordata")] = guestinfo.REDACTED  # cloud-init blanked it in the guest
    vm.extra_config[guestinfo.encoding_key("vendordata")] = " "  # and its encoding (one space: it cannot empty it)
    states = key_states(vm.facts(), record)
    assert states[guestinfo.key("vendordata")] == REDACTED and CHANGED not in states.values()
    assert audit_judge.judge(fleet_of(vm))[0].state == audit_judge.OK


def test_too_large_for_guestinfo_is_refused_with_the_iso_transports_named() -> None:
    big = random.Random(22).randbytes(400_000)  # incompressible: 533336 bytes in base64; fits an ISO, not a key
    data = vmdata().copy(userdata=big)
    vm = FakeVsphereVm()
    with pytest.raises(ValidationError, match="--transport configdrive or --transport nocloud") as info:
        run(vm, keys_op(data))
    assert info.value.field == guestinfo.key("userdata") and vm.calls() == []
    run(vm, attach_op(data))  # the same data as a config drive
    assert vm.our_cdrom() is not None


def test_a_move_from_an_iso_drive_is_one_reconfigure_then_the_file_goes() -> None:
    vm = attached()
    iso = vm.our_cdrom().iso
    run(vm, keys_op())
    kinds = [k for k, _ in vm.calls()]
    assert kinds == ["reconfigure", "delete"]
    devices, extra = vm.calls("reconfigure")[0][1]
    assert isinstance(devices[0], RemoveDevice) and guestinfo.key("metadata") in extra
    assert vm.our_cdrom() is None and iso not in vm.files
    assert DriveState.of(vm.facts()).record.transport == GUESTINFO


def test_a_move_back_to_an_iso_drive_clears_the_keys_in_the_reconfigure_that_adds_it() -> None:
    vm = with_keys()
    run(vm, attach_op(transport=Transport.CONFIGDRIVE))  # named: a plain attach keeps guestinfo
    [extra] = reconfigures(vm)
    assert extra[guestinfo.key("metadata")] == "" and extra[PREFIX + "transport"] == ""
    assert not any(k.startswith(guestinfo.PREFIX) for k in vm.extra_config) and vm.our_cdrom() is not None


def test_step_kind_of_keys() -> None:
    vm = FakeVsphereVm()
    assert [s.kind for s in run(vm, keys_op()).steps] == [Kind.KEYS]
    assert POLICY.avoid_lock_question is False

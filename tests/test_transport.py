"""The transport plumbing: parsed once at each edge (CLI, batch lines, dispatch), carried typed in the requests,
kept in the drive record (a config drive's record unchanged), and the same upload/swap/detach path for both ISO
transports, a move between them one swap. vSphere here is drive_fake's recording stand-in; live runs on vcsim
are in test_transport_live.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from drive_fake import FakeVsphereVm
from sample_data import ED25519_KEY, RSA_KEY
from test_drive_operations import attach_op, detach_op, index, run, update_op, vmdata

from esxi_configdrive import dispatch
from esxi_configdrive.batch import read_batch
from esxi_configdrive.cli import main
from esxi_configdrive.drive.status import status
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.iso import iso_to_tree, read_drive
from esxi_configdrive.record import PREFIX, DriveRecord
from esxi_configdrive.transport import (
    DEFAULT_TRANSPORT,
    TRANSPORT_CHOICES,
    Transport,
    iso_transport,
    kept_or,
    parse_optional_transport,
    parse_transport,
)

VMDATA = {"metadata": {"vm-id": "00000000-0000-4000-8000-000000000001"}}


# ---- parsed once, at the edge ---------------------------------------------------------------------------------


def test_the_transports_and_the_one_default() -> None:
    assert TRANSPORT_CHOICES == ("configdrive", "nocloud", "guestinfo")
    assert DEFAULT_TRANSPORT is Transport.CONFIGDRIVE
    assert parse_transport("nocloud") is Transport.NOCLOUD and str(Transport.NOCLOUD) == "nocloud"
    assert parse_transport(Transport.CONFIGDRIVE) is Transport.CONFIGDRIVE
    assert parse_optional_transport(None) is None and parse_optional_transport("") is None
    with pytest.raises(ValidationError, match="transport: must be one of configdrive, nocloud, guestinfo"):
        parse_transport("iso")
    assert parse_transport("guestinfo") is Transport.GUESTINFO  # issue 22 enabled it


def test_only_the_iso_transports_have_a_table_entry() -> None:
    assert iso_transport(Transport.NOCLOUD).label == "cidata"
    assert iso_transport(Transport.CONFIGDRIVE).label is None  # the VM data's own label (config-2 unless set)
    with pytest.raises(ValidationError, match="puts no ISO"):
        iso_transport(Transport.GUESTINFO)


def test_requests_carry_the_transport_typed() -> None:
    data = vmdata()
    attach = dispatch.parse("attach", dispatch.Request("vm", data=data)).request
    assert attach.transport is None  # type: ignore[union-attr]  # the drive's own (a new drive: configdrive)
    assert (
        kept_or(None, Transport.NOCLOUD) is Transport.NOCLOUD and kept_or(None, DEFAULT_TRANSPORT) is DEFAULT_TRANSPORT
    )
    assert kept_or(Transport.GUESTINFO, Transport.NOCLOUD) is Transport.GUESTINFO
    attach = dispatch.parse("attach", dispatch.Request("vm", data=data, transport="nocloud")).request
    assert attach.transport is Transport.NOCLOUD  # type: ignore[union-attr]
    update = dispatch.parse("update", dispatch.Request("vm", overrides={"hostname": "x"})).request
    assert update.transport is None  # type: ignore[union-attr]  # the drive's own stays
    moving = dispatch.Request("vm", transport="nocloud")
    assert dispatch.has_change(moving)  # a move is a change on its own
    assert dispatch.parse("update", moving).request.transport is Transport.NOCLOUD  # type: ignore[union-attr]
    for command in ("detach", "remove", "status", "reset-password"):
        with pytest.raises(ValidationError, match=f"transport: not for {command}"):
            dispatch.parse(command, dispatch.Request("vm", transport="nocloud"))
    guest = dispatch.parse("attach", dispatch.Request("vm", data=data, transport="guestinfo")).request
    assert guest.transport is Transport.GUESTINFO  # type: ignore[union-attr]


def test_batch_lines_parse_their_transport() -> None:
    lines = [
        json.dumps({"vm": "a", "vmdata": VMDATA, "transport": "nocloud"}),
        json.dumps({"vm": "b", "vmdata": VMDATA, "transport": "floppy"}),
        json.dumps({"vm": "c", "vmdata": VMDATA}),
    ]
    nocloud, bad, plain = read_batch(lines, "attach")
    assert nocloud.error is None and nocloud.options == {"transport": Transport.NOCLOUD}
    assert str(bad.error) == "line 2: transport: must be one of configdrive, nocloud, guestinfo"
    assert plain.error is None and plain.options == {}
    (move,) = read_batch([json.dumps({"vm": "a", "transport": "configdrive"})], "update")
    assert move.error is None and move.options == {"transport": Transport.CONFIGDRIVE}  # a change on its own
    (refused,) = read_batch([json.dumps({"vm": "a", "transport": "nocloud"})], "detach")
    assert "transport" in str(refused.error)


def test_build_and_inspect_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vm = tmp_path / "vm.json"
    vm.write_text(json.dumps(VMDATA))
    seed, drive = tmp_path / "seed.iso", tmp_path / "drive.iso"
    assert main(["build", "--vmdata", str(vm), "--transport", "nocloud", "-o", str(seed), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["transport"] == "nocloud" and iso_to_tree(seed.read_bytes()).label == "cidata"
    assert main(["build", "--vmdata", str(vm), "-o", str(drive), "--json"]) == 0
    assert "transport" not in json.loads(capsys.readouterr().out)  # a config drive's output as it was
    assert main(["inspect", str(seed), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["transport"] == "nocloud" and shown["vm_id"] == VMDATA["metadata"]["vm-id"]
    assert shown["label"] == "cidata"
    assert "meta-data" in shown["files"]
    keys = tmp_path / "keys.json"
    assert main(["build", "--vmdata", str(vm), "--transport", "guestinfo", "-o", str(keys)]) == 0  # issue 22
    assert "guestinfo.metadata" in json.loads(keys.read_text())


# ---- the record -----------------------------------------------------------------------------------------------


def test_a_config_drive_record_is_written_as_before() -> None:
    """Only a transport other than the default is written: a config drive's record has no transport key, so old
    records and new ones are the same bytes, and a record without one reads as a config drive."""
    vm = FakeVsphereVm()
    run(vm, attach_op())
    assert not any(key == PREFIX + "transport" for key in vm.extra_config)
    record = DriveRecord.from_extra_config(vm.extra_config)
    assert record.transport == "" and record.drive_transport is Transport.CONFIGDRIVE
    assert DriveRecord(transport="nocloud").drive_transport is Transport.NOCLOUD
    assert DriveRecord(transport="tape").drive_transport is Transport.CONFIGDRIVE


# ---- the same path on vSphere ---------------------------------------------------------------------------------


def nocloud_vm() -> FakeVsphereVm:
    vm = FakeVsphereVm()
    run(vm, attach_op(transport=Transport.NOCLOUD))
    vm.log.clear()
    return vm


def recorded(vm: FakeVsphereVm) -> DriveRecord:
    return DriveRecord.from_extra_config(vm.extra_config)


def test_attach_nocloud_is_the_config_drives_path_with_a_seed() -> None:
    vm = FakeVsphereVm()
    result = run(vm, attach_op(transport=Transport.NOCLOUD))
    assert [k for k, _ in vm.calls()] == ["make_folder", "upload", "reconfigure"]
    assert vm.extra_config[PREFIX + "transport"] == "nocloud"
    transport, data = read_drive(vm.files[result.iso])
    assert transport is Transport.NOCLOUD and data.hostname == "web-1"
    vm.log.clear()
    again = run(vm, attach_op(transport=Transport.NOCLOUD))
    assert not again.changed and vm.calls() == []  # unchanged: no upload, no reconfigure


def test_update_keeps_the_drives_transport_unless_told() -> None:
    vm = nocloud_vm()
    result = run(vm, update_op(public_keys=(RSA_KEY,)))
    transport, data = read_drive(vm.files[result.iso])
    assert transport is Transport.NOCLOUD and data.public_keys == [RSA_KEY]
    assert recorded(vm).drive_transport is Transport.NOCLOUD


@pytest.mark.parametrize("to", [Transport.CONFIGDRIVE, Transport.NOCLOUD])
def test_a_move_is_one_swap(to: Transport) -> None:
    """upload the new ISO, ONE reconfigure for the backing and the record, then delete the old file: the VM has one
    drive before, one after, and never two."""
    vm = nocloud_vm() if to is Transport.CONFIGDRIVE else FakeVsphereVm()
    if to is Transport.NOCLOUD:
        run(vm, attach_op())
        vm.log.clear()
    old = vm.our_cdrom().iso
    result = run(vm, update_op(transport=to))
    calls = vm.calls()
    assert [k for k, _ in calls].count("reconfigure") == 1
    assert index(calls, "upload") < index(calls, "reconfigure") < index(calls, "delete")
    assert calls[index(calls, "delete")][1] == old and old not in vm.files
    assert len([c for c in vm.cdroms if c.iso]) == 1  # the VM's own CD-ROM is empty: one drive
    transport, data = read_drive(vm.files[result.iso])
    assert transport is to and recorded(vm).drive_transport is to
    assert data.hostname == "web-1" and data.public_keys == [ED25519_KEY]  # the same VM data, moved
    vm.log.clear()
    assert not run(vm, update_op(transport=to)).changed and vm.calls() == []  # moved: a re-run does nothing


def test_status_and_detach_show_the_transport() -> None:
    vm = nocloud_vm()
    shown = status(vm).extra
    assert shown["transport"] == "nocloud" and shown["record"]["transport"] == "nocloud"
    assert shown["content"]["vm_id"] == vmdata().vm_id
    detached = run(vm, detach_op())
    assert detached.to_dict()["transport"] == "nocloud"
    assert recorded(vm).drive_transport is Transport.NOCLOUD  # still known after detach
    plain = FakeVsphereVm()
    run(plain, attach_op())
    assert "transport" not in status(plain).extra and "transport" not in run(plain, detach_op()).to_dict()


def test_a_label_the_transport_does_not_take_is_refused_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="a nocloud ISO is labelled cidata"):
        dispatch.parse("attach", dispatch.Request("vm", data=vmdata().copy(label="CONFIG-2"), transport="nocloud"))
    with pytest.raises(ValidationError, match="label: a nocloud ISO is labelled cidata"):
        dispatch.parse("update", dispatch.Request("vm", options={"label": "x"}, transport="nocloud"))
    vm = nocloud_vm()
    with pytest.raises(ValidationError, match="labelled cidata"):
        run(vm, update_op(label="CONFIG-2"))  # the seed's own transport, read from the VM
    assert [k for k, _ in vm.calls()] == []  # refused before any change
    assert status(vm).extra["content"]["label"] == "cidata"  # the ISO's label, not the data's config-2
    assert dispatch.parse("attach", dispatch.Request("vm", data=vmdata().copy(label="CONFIG-2"))).request


@pytest.mark.parametrize("to", [Transport.NOCLOUD, Transport.CONFIGDRIVE])
def test_a_moves_dry_run_lists_exactly_what_the_move_does(to: Transport) -> None:
    def start() -> FakeVsphereVm:
        vm = FakeVsphereVm()
        run(vm, attach_op(transport=Transport.CONFIGDRIVE if to is Transport.NOCLOUD else Transport.NOCLOUD))
        vm.log.clear()
        return vm

    planned_vm, real_vm = start(), start()
    planned = run(planned_vm, update_op(transport=to), dry_run=True)
    assert planned_vm.calls() == []  # nothing changed
    real = run(real_vm, update_op(transport=to))
    assert [(s.kind, s.target) for s in planned.steps] == [(s.kind, s.target) for s in real.steps]
    assert planned.changed == real.changed is True and planned.iso == real.iso

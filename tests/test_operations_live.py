"""Every operation end to end against the live vcsim harness, on powered-off and powered-on VMs, and the tool's
behaviour under each fault the harness injects."""

from __future__ import annotations

import base64
import threading

import pytest
from pyVmomi import vim
from sample_data import ED25519_KEY, RSA_KEY
from tool_fixtures import (
    cloud_init_read,
    fetch_file,
    folder_listing,
    iso_paths,
    record_of,
    settings_for,
)
from vsphere_harness import (
    cdroms,
    connect,
    create_local_datastore,
    disconnect,
    find_host,
    get_property,
    hosts_seeing,
    power_off,
    power_on,
)

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.errors import ConfigDriveError, LockedDoor, ValidationError, VsphereFault
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live

USERDATA = "#cloud-config\nruncmd:\n  - [sh, -c, 'echo configured']\n"


def vmdata(vm_id: str = "0f6a8b52-4c55-4d2e-8d2e-0d6b9d1f3a10", **changes) -> VmData:
    obj = {
        "metadata": {
            "vm-id": vm_id,
            "instance-id": "i-2-24-VM",
            "local-hostname": "web-1",
            "availability-zone": "zone-a",
            "public-keys": [ED25519_KEY],
        },
        "userdata": USERDATA,
        "password": "first-Passw0rd",
    }
    obj.update(changes)
    return VmData.from_dict(obj)


def first_cdrom_state(vm: vim.VirtualMachine) -> tuple:
    d = next(c for c in cdroms(vm) if c.unitNumber == 0 and c.controllerKey == 200)
    return (d.key, type(d.backing).__name__, getattr(d.backing, "fileName", None), d.connectable.connected)


def our_drives(vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualCdrom]:
    return [c for c in cdroms(vm) if "ConfigDrive/" in (getattr(c.backing, "fileName", "") or "")]


def controller_kind(vm: vim.VirtualMachine, drive: vim.vm.device.VirtualCdrom) -> str:
    ctrl = next(d for d in vm.config.hardware.device if d.key == drive.controllerKey)
    return "ide" if isinstance(ctrl, vim.vm.device.VirtualIDEController) else "sata"


# ---- attach -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_attach_adds_a_second_cdrom_read_by_cloud_init(tool, vcsim_faults, vsphere, make_vm, tmp_path, powered_on):
    vm = make_vm(powered_on=powered_on)
    before = first_cdrom_state(vm)
    result = tool.attach(vm.name, vmdata())
    assert result.changed

    drives = our_drives(vm)
    assert len(drives) == 1
    drive = drives[0]
    assert drive.connectable.startConnected is True
    assert drive.connectable.connected is powered_on
    assert controller_kind(vm, drive) == ("sata" if powered_on else "ide")
    assert first_cdrom_state(vm) == before  # the VM's own CD-ROM is untouched
    assert len(cdroms(vm)) == 2
    assert drive.backing.fileName == f"[LocalDS_0] ConfigDrive/{vm.name}/configdrive.iso"

    iso = fetch_file(vcsim_faults, vsphere, drive.backing.fileName)
    seen = cloud_init_read(iso, tmp_path)
    assert seen["uuid"] == "0f6a8b52-4c55-4d2e-8d2e-0d6b9d1f3a10"
    assert seen["hostname"] == "web-1"
    assert list(seen["public_keys"].values()) == [ED25519_KEY]
    assert base64.b64decode(seen["userdata"]) == USERDATA.encode()
    rec = record_of(vsphere, vm)
    assert rec["iso"] == drive.backing.fileName and rec["owner"] == vm.config.instanceUuid
    assert len(rec["digest"]) == 64 and len(rec["sha256"]) == 64


def test_attach_again_with_the_same_data_changes_nothing(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    name = vm.name
    tool.attach(name, vmdata())
    version = get_property(vsphere, vm, "config.changeVersion")
    vcsim_faults.reset_faults()  # counters to zero
    again = tool.attach(name, vmdata())
    counters = vcsim_faults.counters()
    assert again.changed is False
    assert counters["folder_requests"].get("PUT", 0) == 0
    assert "ReconfigVM_Task" not in counters["soap_by_method"]
    assert get_property(vsphere, vm, "config.changeVersion") == version
    assert len(our_drives(vm)) == 1


def test_attach_by_moref_uuid_and_inventory_path(tool, vsphere, make_vm):
    vm = make_vm()
    assert tool.attach(vm._moId, vmdata()).changed
    assert tool.attach(vm.config.instanceUuid, vmdata()).changed is False
    assert tool.attach(f"DC0/vm/{vm.name}", vmdata()).changed is False
    assert len(our_drives(vm)) == 1


def test_attach_to_a_missing_vm_is_bad_input(tool):
    from esxi_configdrive.errors import NotFound

    with pytest.raises(NotFound):
        tool.attach("no-such-vm", vmdata())


def test_attach_ide_on_a_running_vm_is_refused_before_any_change(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm(powered_on=True)
    name = vm.name
    vcsim_faults.reset_faults()
    with pytest.raises(ValidationError):
        tool.attach(name, vmdata(), controller="ide")
    counters = vcsim_faults.counters()
    assert counters["folder_requests"].get("PUT", 0) == 0
    assert "ReconfigVM_Task" not in counters["soap_by_method"]
    assert our_drives(vm) == []


def test_full_ide_on_a_powered_off_vm_falls_back_to_sata(tool, vsphere, make_vm):
    vm = make_vm(sata_controller=False)
    # fill the three free IDE slots with the VM's own CD-ROMs
    from vsphere_harness import reconfigure

    changes = []
    for key, (ctrl, unit) in enumerate([(200, 1), (201, 0), (201, 1)], start=-300):
        changes.append(
            vim.vm.device.VirtualDeviceSpec(
                operation="add",
                device=vim.vm.device.VirtualCdrom(
                    key=key,
                    controllerKey=ctrl,
                    unitNumber=unit,
                    backing=vim.vm.device.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False),
                ),
            )
        )
    reconfigure(vsphere, vm, vim.vm.ConfigSpec(deviceChange=changes))
    result = tool.attach(vm.name, vmdata())
    assert "add SATA (AHCI) controller 0" in result.actions
    drive = our_drives(vm)[0]
    assert controller_kind(vm, drive) == "sata"


def test_dry_run_changes_nothing(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm(powered_on=True)
    name = vm.name
    vcsim_faults.reset_faults()
    plan = tool.attach(name, vmdata(), dry_run=True)
    assert plan.dry_run and plan.changed
    assert any("add CD-ROM at sata" in a for a in plan.actions)
    counters = vcsim_faults.counters()
    assert set(counters["soap_by_method"]) <= {"RetrievePropertiesEx"}
    assert counters["folder_requests"] == {}
    assert our_drives(vm) == []


def test_network_data_auto_uses_the_vms_real_macs(tool, vcsim_faults, vsphere, make_vm, tmp_path):
    vm = make_vm()
    tool.attach(vm.name, vmdata(), network_data_auto=True)
    macs = [d.macAddress for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    iso = fetch_file(vcsim_faults, vsphere, iso_paths(vsphere, vm)[-1])
    net = cloud_init_read(iso, tmp_path)["networkdata"]
    assert [link["ethernet_mac_address"] for link in net["links"]] == [m.lower() for m in macs]
    assert net["networks"][0]["type"] == "ipv4_dhcp"


# ---- update -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_update_changes_only_the_given_fields_and_leaves_no_old_iso(tool, vcsim_faults, vsphere, make_vm, powered_on):
    vm = make_vm(powered_on=powered_on)
    first = tool.attach(vm.name, vmdata()).iso
    result = tool.update(vm.name, overrides={"password": "second-Passw0rd", "public_keys": [RSA_KEY]})
    assert result.changed and result.iso != first
    drive = our_drives(vm)[0]
    assert drive.backing.fileName == result.iso
    assert drive.connectable.startConnected and drive.connectable.connected is powered_on
    new = read_iso(fetch_file(vcsim_faults, vsphere, result.iso))
    old = vmdata()
    assert new.password == "second-Passw0rd"
    assert new.public_keys == [RSA_KEY]
    assert (new.metadata, new.userdata, new.vendor_data, new.network_data) == (
        old.metadata,
        old.userdata,
        old.vendor_data,
        old.network_data,
    )
    folder = str(DatastorePath.parse(result.iso).folder)
    assert folder_listing(vsphere, folder) == [DatastorePath.parse(result.iso).name]
    assert fetch_file(vcsim_faults, vsphere, first) is None
    # and again: nothing to do
    assert tool.update(vm.name, overrides={"password": "second-Passw0rd", "public_keys": [RSA_KEY]}).changed is False


def test_update_userdata_and_reset_password(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    tool.attach(vm.name, vmdata())
    tool.update(vm.name, overrides={"userdata": b"#!/bin/sh\necho v2\n"})
    reset = tool.reset_password(vm.name)
    password = reset.extra["password"]
    assert len(password) == 20
    data = read_iso(fetch_file(vcsim_faults, vsphere, reset.iso))
    assert data.password == password and data.userdata == b"#!/bin/sh\necho v2\n"
    assert data.vm_id == vmdata().vm_id  # same instance: cloud-init must see the same instance id


def test_update_without_a_drive_says_attach_first(tool, make_vm):
    vm = make_vm()
    with pytest.raises(ConfigDriveError, match="attach"):
        tool.update(vm.name, overrides={"password": "x-Passw0rd1"})


def test_update_dry_run_does_not_show_the_password(tool, vcsim_faults, make_vm):
    vm = make_vm()
    tool.attach(vm.name, vmdata())
    plan = tool.update(vm.name, overrides={"password": "never-Shown-9"}, dry_run=True)
    assert "never-Shown-9" not in repr(plan.to_dict())


# ---- detach / remove --------------------------------------------------------------------------------------


def test_detach_powered_off_removes_the_device_then_the_iso_file(tool, vsphere, make_vm):
    vm = make_vm()
    before = first_cdrom_state(vm)
    iso = tool.attach(vm.name, vmdata()).iso
    result = tool.detach(vm.name)
    assert result.changed
    assert our_drives(vm) == [] and len(cdroms(vm)) == 1
    assert first_cdrom_state(vm) == before
    # the ISO is gone; the (empty) folder stays for the next attach, and remove takes it
    assert folder_listing(vsphere, str(DatastorePath.parse(iso).folder)) == []
    assert tool.detach(vm.name).changed is False
    assert tool.remove(vm.name).changed is True
    assert folder_listing(vsphere, str(DatastorePath.parse(iso).folder)) is None


def test_detach_powered_on_empties_the_drive_and_attach_reuses_it(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm(powered_on=True)
    iso = tool.attach(vm.name, vmdata()).iso
    key = our_drives(vm)[0].key
    tool.detach(vm.name)
    drive = next(c for c in cdroms(vm) if c.key == key)
    assert not isinstance(drive.backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)
    assert not drive.connectable.connected and not drive.connectable.startConnected
    assert fetch_file(vcsim_faults, vsphere, iso) is None
    # nothing points at a missing file: every ISO backing of the VM exists
    for path in iso_paths(vsphere, vm):
        assert fetch_file(vcsim_faults, vsphere, path) is not None
    again = tool.attach(vm.name, vmdata())
    assert [c.key for c in our_drives(vm)] == [key]
    assert our_drives(vm)[0].connectable.connected
    assert fetch_file(vcsim_faults, vsphere, again.iso) is not None


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
def test_remove_takes_device_iso_and_folder(tool, vsphere, make_vm, powered_on):
    vm = make_vm(powered_on=powered_on)
    iso = tool.attach(vm.name, vmdata()).iso
    tool.remove(vm.name)
    assert our_drives(vm) == []
    assert all(c.key != 0 for c in cdroms(vm))
    assert len(cdroms(vm)) == 1  # the SATA drive of a running VM is hot-removed; the VM's own one stays
    assert folder_listing(vsphere, str(DatastorePath.parse(iso).folder)) is None
    assert tool.remove(vm.name).changed is False


def test_remove_ide_drive_of_a_running_vm_empties_it(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    tool.attach(vm.name, vmdata())  # off: IDE
    power_on(vsphere, vm)
    result = tool.remove(vm.name)
    assert any("cannot be removed" in a for a in result.actions)
    assert vcsim_faults.counters()["faults"]["ide_hotplug_refused"] == 0  # the tool did not even try
    assert iso_paths(vsphere, vm) == []
    power_off(vsphere, vm)
    tool.remove(vm.name)
    assert len(cdroms(vm)) == 1


# ---- prepare-migration ------------------------------------------------------------------------------------


def test_prepare_migration_moves_the_iso_where_the_target_host_sees_it(tool, vcsim_faults, vsphere, make_vm):
    name = f"OnlyH0-{make_vm.__hash__() % 10000}"
    create_local_datastore(vsphere, "DC0_C0_H0", name)
    vm = make_vm(host="DC0_C0_H0")
    tool.attach(vm.name, vmdata(), datastore=name)
    old = iso_paths(vsphere, vm)[-1]
    assert old.startswith(f"[{name}]")
    assert "DC0_C0_H1" not in hosts_seeing(vsphere, name)

    plan = tool.prepare_migration(vm.name, "DC0_C0_H1", dry_run=True)
    assert plan.changed and iso_paths(vsphere, vm)[-1] == old

    result = tool.prepare_migration(vm.name, "DC0_C0_H1")
    new = iso_paths(vsphere, vm)[-1]
    assert result.changed and new == result.iso
    target_ds = DatastorePath.parse(new).datastore
    assert "DC0_C0_H1" in hosts_seeing(vsphere, target_ds)
    assert fetch_file(vcsim_faults, vsphere, new) is not None
    assert fetch_file(vcsim_faults, vsphere, old) is None
    assert tool.prepare_migration(vm.name, "DC0_C0_H1").changed is False

    migrated = tool.prepare_migration(vm.name, "DC0_C0_H1", migrate=True)
    assert any("migrated" in a for a in migrated.actions)
    assert get_property(vsphere, vm, "runtime.host")._moId == find_host(vsphere, "DC0_C0_H1")._moId


def test_prepare_migration_to_an_unknown_host(tool, make_vm):
    from esxi_configdrive.errors import NotFound

    vm = make_vm()
    tool.attach(vm.name, vmdata())
    with pytest.raises(NotFound):
        tool.prepare_migration(vm.name, "no-such-host")


# ---- status -----------------------------------------------------------------------------------------------


def test_status_reports_device_file_and_content(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    assert tool.status(vm.name).extra["attached"] is False
    tool.attach(vm.name, vmdata())
    status = tool.status(vm.name).to_dict()
    assert status["attached"] and status["file_exists"] and status["matches_record"]
    assert status["device"]["controller"] == "ide" and status["device"]["start_connected"]
    assert status["content"]["hostname"] == "web-1" and status["content"]["password_set"]
    assert "first-Passw0rd" not in repr(status)


# ---- faults -----------------------------------------------------------------------------------------------


def test_locked_door_answered_no_keeps_the_old_drive(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm(powered_on=True)
    old = tool.attach(vm.name, vmdata()).iso
    vcsim_faults.set_faults(locked_door={"enabled": True, "vms": [vm.name]})
    with pytest.raises(LockedDoor, match="--force-eject"):
        tool.update(vm.name, overrides={"password": "second-Passw0rd"})
    counters = vcsim_faults.counters()["faults"]
    assert counters["questions_asked"] == 1 and counters["questions_answered_no"] == 1
    assert iso_paths(vsphere, vm)[-1] == old
    assert read_iso(fetch_file(vcsim_faults, vsphere, old)).password == "first-Passw0rd"
    assert folder_listing(vsphere, str(DatastorePath.parse(old).folder)) == [DatastorePath.parse(old).name]


def test_locked_door_with_force_eject_swaps(session, vcsim_faults, vsphere, make_vm):
    tool = ConfigDriveController(session, task_timeout=20, force_eject=True)
    vm = make_vm(powered_on=True)
    tool.attach(vm.name, vmdata())
    vcsim_faults.set_faults(locked_door={"enabled": True, "vms": [vm.name]})
    result = tool.update(vm.name, overrides={"password": "second-Passw0rd"})
    assert vcsim_faults.counters()["faults"]["questions_answered_yes"] == 1
    assert iso_paths(vsphere, vm)[-1] == result.iso
    assert read_iso(fetch_file(vcsim_faults, vsphere, result.iso)).password == "second-Passw0rd"


def test_avoid_lock_question_sets_the_options_and_no_question_is_asked(session, vcsim_faults, vsphere, make_vm):
    tool = ConfigDriveController(session, task_timeout=20, avoid_lock_question=True)
    vm = make_vm(powered_on=True)
    tool.attach(vm.name, vmdata())
    extra = {o.key: o.value for o in get_property(vsphere, vm, "config.extraConfig")}
    assert extra["cdrom.showIsoLockWarning"] == "FALSE" and extra["msg.autoanswer"] == "TRUE"
    vcsim_faults.set_faults(locked_door={"enabled": True, "vms": [vm.name]})
    result = ConfigDriveController(session, task_timeout=20).update(vm.name, overrides={"password": "x-Passw0rd2"})
    faults = vcsim_faults.counters()["faults"]
    assert faults["questions_asked"] == 0
    assert iso_paths(vsphere, vm)[-1] == result.iso


def test_session_expiry_is_transparent(session, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    name = vm.name
    tool = ConfigDriveController(session, task_timeout=20)
    vcsim_faults.set_faults(session_expiry={"after_calls": 2, "repeat": True})
    tool.attach(name, vmdata())
    tool.update(name, overrides={"password": "second-Passw0rd"})
    assert vcsim_faults.counters()["faults"]["sessions_expired"] >= 2
    vcsim_faults.reset_faults()
    assert session.login_generation >= 3
    si = connect(vcsim_faults)  # the test's own login expired with the others
    try:
        vm = vim.VirtualMachine(vm._moId, si._stub)
        assert len(our_drives(vm)) == 1
        assert read_iso(fetch_file(vcsim_faults, si, iso_paths(si, vm)[-1])).password == "second-Passw0rd"
    finally:
        disconnect(si)


@pytest.mark.parametrize("mode", ["status", "reset"])
def test_transient_upload_failures_are_retried(tool, vcsim_faults, vsphere, make_vm, mode):
    vm = make_vm()
    vcsim_faults.set_faults(upload_failures={"count": 2, "mode": mode})
    result = tool.attach(vm.name, vmdata())
    assert vcsim_faults.counters()["faults"]["upload_failed"] == 2
    assert fetch_file(vcsim_faults, vsphere, result.iso) is not None


def test_persistent_upload_failure_is_a_clear_error_and_leaves_nothing(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    vcsim_faults.set_faults(upload_failures={"count": 100, "mode": "status", "status": 503})
    with pytest.raises(ConfigDriveError, match="HTTP 503"):
        tool.attach(vm.name, vmdata())
    assert our_drives(vm) == []
    assert fetch_file(vcsim_faults, vsphere, f"[LocalDS_0] ConfigDrive/{vm.name}/configdrive.iso") is None
    assert "iso" not in record_of(vsphere, vm)


def test_failed_reconfigure_removes_the_upload_and_leaves_the_vm_as_it_was(tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    before = [(c.key, type(c.backing).__name__) for c in cdroms(vm)]
    vcsim_faults.set_faults(reconfig_failures={"count": 1, "vms": [vm.name]})
    with pytest.raises(VsphereFault) as refused:
        tool.attach(vm.name, vmdata())
    assert isinstance(refused.value.fault, vim.fault.GenericVmConfigFault)  # vSphere's own fault, kept
    assert [(c.key, type(c.backing).__name__) for c in cdroms(vm)] == before
    assert folder_listing(vsphere, f"[LocalDS_0] ConfigDrive/{vm.name}") is None  # the folder it made goes too
    assert record_of(vsphere, vm) == {}
    # and the same on update: the old drive stays, the new upload goes
    old = tool.attach(vm.name, vmdata()).iso
    vcsim_faults.set_faults(reconfig_failures={"count": 1, "vms": [vm.name]})
    with pytest.raises(VsphereFault) as refused:
        tool.update(vm.name, overrides={"password": "second-Passw0rd"})
    assert isinstance(refused.value.fault, vim.fault.GenericVmConfigFault)
    assert iso_paths(vsphere, vm)[-1] == old
    assert folder_listing(vsphere, str(DatastorePath.parse(old).folder)) == [DatastorePath.parse(old).name]


def test_concurrent_attaches_make_one_drive(vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        s = Session(settings_for(vcsim_faults)).connect()
        try:
            barrier.wait()
            ConfigDriveController(s, task_timeout=20).attach(vm.name, vmdata(userdata=f"#cloud-config\n# {i}\n"))
        except BaseException as e:  # collected and asserted on below
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(our_drives(vm)) == 1
    iso = iso_paths(vsphere, vm)[-1]
    data = read_iso(fetch_file(vcsim_faults, vsphere, iso))
    assert data.userdata.startswith(b"#cloud-config\n# ")
    assert record_of(vsphere, vm)["iso"] == iso
    assert vcsim_faults.counters()["faults"]["concurrent_access"] >= 1


# ---- guest-dependent content --------------------------------------------------------------------------------


def test_admin_pass_follows_the_guest_os(tool, vcsim_faults, vsphere, make_vm, tmp_path):
    """meta_data.json's admin_pass (for cloudbase-init) goes only to Windows guests: cloud-init copies meta_data
    into the world-readable /run/cloud-init/instance-data.json."""
    from vsphere_harness import reconfigure

    linux, windows = make_vm(), make_vm()
    reconfigure(vsphere, windows, vim.vm.ConfigSpec(guestId="windows9Server64Guest"))
    for vm, expected in ((linux, None), (windows, "first-Passw0rd")):
        iso = fetch_file(vcsim_faults, vsphere, tool.attach(vm.name, vmdata()).iso)
        (tmp_path / vm.name).mkdir()
        assert cloud_init_read(iso, tmp_path / vm.name)["admin_pass"] == expected
        assert read_iso(iso).password == "first-Passw0rd"  # the CloudStack files and vendor data carry it anyway
    forced = ConfigDriveController(tool.session, admin_pass="yes").update(linux.name, overrides={"hostname": "h2"})
    assert read_iso(fetch_file(vcsim_faults, vsphere, forced.iso)).admin_pass is True


def test_vm_id_equal_to_the_bios_uuid_is_warned_about(tool, make_vm):
    vm = make_vm()
    result = tool.attach(vm.name, vmdata(vm_id=vm.config.uuid))
    assert any("BIOS UUID" in w for w in result.extra["warnings"])
    other = make_vm()
    assert "warnings" not in tool.attach(other.name, vmdata()).extra


# ---- folders shared by same-named VMs, renamed VMs ----------------------------------------------------------


def test_remove_leaves_a_same_named_vms_drive_and_folder_alone(tool, vcsim_faults, vsphere, make_vm):
    """'web 1' and 'web_1' both get ConfigDrive/web_1: one VM's remove must not delete the other's drive."""
    a, b = make_vm("cdshare 1"), make_vm("cdshare_1")
    tool.attach(a.name, vmdata())
    tool.detach(a.name)  # a's file goes, the folder stays
    b_iso = tool.attach(b.name, vmdata(vm_id="11111111-2222-4333-8444-555555555555")).iso
    assert DatastorePath.parse(b_iso).folder.path == "ConfigDrive/cdshare_1"
    result = tool.remove(a.name)
    assert any(a.startswith("left [LocalDS_0] ConfigDrive/cdshare_1") for a in result.actions), result.actions
    assert fetch_file(vcsim_faults, vsphere, b_iso) is not None
    assert iso_paths(vsphere, b) == [b_iso]
    tool.remove(b.name)  # b's remove finds the folder empty after deleting its own file
    assert folder_listing(vsphere, "[LocalDS_0] ConfigDrive/cdshare_1") is None


def test_a_renamed_vm_still_cleans_up_its_old_folder(tool, vcsim_faults, vsphere, make_vm):
    from vsphere_harness import wait_for_task

    vm = make_vm()
    old_iso = tool.attach(vm.name, vmdata()).iso
    wait_for_task(vsphere, vm.Rename_Task(vm.name + "-renamed"))
    tool.remove(vm.name)
    assert fetch_file(vcsim_faults, vsphere, old_iso) is None
    assert folder_listing(vsphere, str(DatastorePath.parse(old_iso).folder)) is None


def test_prepare_migration_never_overwrites_a_file_it_did_not_write(tool, vcsim_faults, vsphere, make_vm):
    from vsphere_harness import make_directory, upload

    name = f"OnlyH0b-{id(make_vm) % 10000}"
    create_local_datastore(vsphere, "DC0_C0_H0", name)
    vm = make_vm(host="DC0_C0_H0")
    old = tool.attach(vm.name, vmdata(), datastore=name).iso
    digest = record_of(vsphere, vm)["digest"]
    squatter = f"ConfigDrive/{vm.name}/configdrive-{digest[:12]}.iso"
    make_directory(vsphere, f"[LocalDS_0] ConfigDrive/{vm.name}")
    assert upload(vcsim_faults, vsphere, "LocalDS_0", squatter, b"someone else's file").status_code in (200, 201)
    with pytest.raises(ConfigDriveError, match="not this VM's drive"):
        tool.prepare_migration(vm.name, "DC0_C0_H1")
    assert iso_paths(vsphere, vm) == [old]
    assert fetch_file(vcsim_faults, vsphere, f"[LocalDS_0] {squatter}") == b"someone else's file"

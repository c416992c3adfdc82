"""The collection's modules in real ``ansible-playbook`` runs against the vcsim harness; what they did is checked
with the harness's own pyVmomi session and by reading the ISO back from the datastore."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from pyVmomi import vim
from sample_data import ED25519_KEY
from tool_fixtures import fetch_file, folder_listing, iso_paths, record_of
from vsphere_harness import cdroms, get_property

from esxi_configdrive import VmData, read_iso

pytestmark = pytest.mark.live

DRIVE = "esxi_configdrive.vsphere.config_drive"
INFO = "esxi_configdrive.vsphere.config_drive_info"
PASSWORD_FROM_ENV = "{{ lookup('ansible.builtin.env', 'DRIVE_PASSWORD') }}"


def vmdata(hostname: str, n: int = 1) -> dict:
    return {
        "metadata": {"vm-id": f"00000000-0000-4000-8000-{n:012d}", "local-hostname": hostname,
                     "public-keys": [ED25519_KEY]},
        "userdata": f"#cloud-config\n# {hostname}\n",
    }  # fmt: skip


def task(title: str, module: str = DRIVE, /, **args: object) -> dict:
    return {"name": title, module: args}


def drive_of(sim, si, vm) -> VmData:
    """The drive's content, read from the ISO the VM's CD-ROM points at (downloaded from the datastore)."""
    paths = [p for p in iso_paths(si, vm) if "ConfigDrive/" in p]
    assert len(paths) == 1, paths
    return read_iso(fetch_file(sim, si, paths[0]))


def attach_with_package(tool, vm, hostname: str, password: str | None = None) -> str:
    data = VmData.from_object({**vmdata(hostname), **({"password": password} if password else {})})
    return tool.attach(vm.name, data).iso


def untouched(si, vm) -> bool:
    return [p for p in iso_paths(si, vm) if "ConfigDrive/" in p] == [] and record_of(si, vm) == {}


def test_attach_then_the_same_again_changes_nothing(ansible, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    ansible.secrets.append("Drive-pw-1234")
    args = {"name": vm.name, "vmdata": vmdata("web-1"), "vm_password": PASSWORD_FROM_ENV}
    run = ansible.run([task("attach", **args), task("attach again", **args)], env={"DRIVE_PASSWORD": "Drive-pw-1234"})
    assert run.rc == 0, run.output
    first, again = run.task("attach"), run.task("attach again")
    assert first["changed"] is True and first["iso"] == f"[LocalDS_0] ConfigDrive/{vm.name}/configdrive.iso"
    assert first["device"]["controller"] == "ide" and first["device"]["start_connected"] is True  # VM is off
    assert any(a.startswith("uploaded") for a in first["actions"]), first["actions"]
    assert again["changed"] is False and again["iso"] == first["iso"] and again["actions"] == []
    drive = drive_of(vcsim_faults, vsphere, vm)
    assert (drive.hostname, drive.password, drive.public_keys) == ("web-1", "Drive-pw-1234", [ED25519_KEY])
    assert drive.userdata == b"#cloud-config\n# web-1\n"


def test_check_mode_reports_the_change_and_changes_nothing(ansible, vcsim_faults, vsphere, make_vm):
    vm = make_vm(powered_on=True)
    run = ansible.run([task("plan", name=vm.name, vmdata=vmdata("web-check"))], check=True, diff=True)
    assert run.rc == 0, run.output
    plan = run.task("plan")
    assert plan["changed"] is True and plan["dry_run"] is True
    assert any("upload the config drive" in a for a in plan["actions"]), plan["actions"]
    assert any("SATA" in a or "sata" in a for a in plan["actions"]), plan["actions"]  # a running VM: SATA
    # the harness's own session: no CD-ROM backed by an ISO, no record, no file, no folder
    assert untouched(vsphere, vm)
    assert fetch_file(vcsim_faults, vsphere, plan["iso"]) is None
    assert folder_listing(vsphere, f"[LocalDS_0] ConfigDrive/{vm.name}") is None
    # diff mode: no drive before, the planned content after
    assert plan["diff"]["before"] == {"attached": False}
    after = plan["diff"]["after"]
    assert (after["attached"], after["hostname"], after["public_keys"]) == (True, "web-check", [ED25519_KEY])
    assert after["userdata"] == "#cloud-config\n# web-check\n" and "password" not in after
    assert f"config drive of {vm.name} (after)" in run.stdout and '"hostname": "web-check"' in run.stdout


def test_update_of_user_data_lands_in_the_iso_and_shows_in_the_diff(ansible, tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm(powered_on=True)
    ansible.secrets.append("Kept-pw-5678")
    old_iso = attach_with_package(tool, vm, "web-upd", password="Kept-pw-5678")
    new_userdata = "#cloud-config\nruncmd:\n  - [touch, /tmp/updated-by-ansible]\n"
    run = ansible.run([task("update", name=vm.name, userdata=new_userdata)], diff=True)
    assert run.rc == 0, run.output
    result = run.task("update")
    assert result["changed"] is True and result["iso"] != old_iso
    drive = drive_of(vcsim_faults, vsphere, vm)
    assert drive.userdata == new_userdata.encode()
    assert (drive.hostname, drive.password) == ("web-upd", "Kept-pw-5678")  # the other fields stay
    assert fetch_file(vcsim_faults, vsphere, old_iso) is None  # the old ISO was deleted
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert before["userdata"] == "#cloud-config\n# web-upd\n" and after["userdata"] == new_userdata
    assert after["userdata_bytes"] == len(new_userdata) and after["iso"] == result["iso"] != before["iso"]
    assert before["password"] == after["password"] == "********"  # masked, and unchanged
    assert before["hostname"] == after["hostname"] == "web-upd"
    assert "updated-by-ansible" in run.stdout and "# web-upd" in run.stdout  # the diff as Ansible prints it


def test_detached_and_absent(ansible, tool, vcsim_faults, vsphere, make_vm):
    running, stopped = make_vm(powered_on=True), make_vm()
    running_iso = attach_with_package(tool, running, "web-on")
    stopped_iso = attach_with_package(tool, stopped, "web-off")
    stopped_uuid = get_property(vsphere, stopped, "config.instanceUuid")
    run = ansible.run(
        [
            task("stop", moid=running._moId, state="detached"),
            task("expunge", uuid=stopped_uuid, state="absent"),
            task("expunge again", name=stopped.name, folder="/DC0/vm", state="absent"),
        ]
    )
    assert run.rc == 0, run.output
    stop, expunge, again = run.task("stop"), run.task("expunge"), run.task("expunge again")
    assert stop["changed"] is True and expunge["changed"] is True and again["changed"] is False
    # the running VM keeps its CD-ROM, emptied (detach removes a device only from a VM that is off); file gone
    assert [p for p in iso_paths(vsphere, running) if "ConfigDrive/" in p] == []
    assert fetch_file(vcsim_faults, vsphere, running_iso) is None
    assert stop["device"]["iso"] is None and stop["device"]["connected"] is False
    # the expunged VM: the device, the file and the folder are gone; its own CD-ROM stays
    assert len(cdroms(stopped)) == 1 and iso_paths(vsphere, stopped) == []
    assert fetch_file(vcsim_faults, vsphere, stopped_iso) is None
    assert folder_listing(vsphere, f"[LocalDS_0] ConfigDrive/{stopped.name}") is None
    assert "device" not in expunge


def test_bad_input_fails_naming_the_field_and_leaves_the_vm_alone(ansible, vsphere, make_vm):
    vm = make_vm()
    blank_vm_id = {"metadata": {"vm-id": " ", "local-hostname": "web-bad"}}
    outside = {"interfaces": [{"addresses": ["10.1.2.3/24"], "gateway4": "10.9.9.1"}]}
    dhcp = {"interfaces": [{"dhcp4": True}]}
    run = ansible.run(
        [
            {**task("blank vm-id", name=vm.name, vmdata=blank_vm_id), "ignore_errors": True},
            {**task("gateway outside", name=vm.name, vmdata=vmdata("web-bad"), network=outside),
             "ignore_errors": True},
            {**task("auto and a network", name=vm.name, vmdata=vmdata("web-bad"), network=dhcp,
                    network_data="auto"), "ignore_errors": True},
            {**task("bad key", name=vm.name, vmdata=vmdata("web-bad"), ssh_keys=["ssh-rsa nonsense"]),
             "ignore_errors": True},
            {**task("bad label", name=vm.name, vmdata=vmdata("web-bad"), label="x" * 17), "ignore_errors": True},
            {**task("fields for a stop", name=vm.name, state="detached", userdata="x"), "ignore_errors": True},
            {**task("no such VM", name="no-such-vm", vmdata=vmdata("web-bad")), "ignore_errors": True},
            {**task("port in hostname", name=vm.name, vmdata=vmdata("web-bad"), hostname="127.0.0.1:443"),
             "ignore_errors": True},
        ]
    )  # fmt: skip
    assert run.rc == 0, run.output  # every failure ignored
    expected = {
        "blank vm-id": ("vmdata.metadata.vm-id", "blank"),
        "gateway outside": ("network.interfaces[0].gateway4", "outside"),
        "auto and a network": ("network_data", "contradicts the network section"),
        "bad key": ("ssh_keys[0]", ""),
        "bad label": ("label", "16"),
        "fields for a stop": ("userdata", "does not apply with state=detached"),
        "port in hostname": ("hostname", "without the port"),
    }
    for name, (field, words) in expected.items():
        result = run.task(name)
        assert result["_status"] == "failed" and result["field"] == field, result
        assert result["msg"].startswith(f"{field}: ") and words in result["msg"], result["msg"]
        assert "Traceback" not in run.output + json.dumps(result)
    missing = run.task("no such VM")
    assert missing["_status"] == "failed" and missing["msg"] == "no VM named 'no-such-vm'", missing
    assert missing["exit_status"] == 2
    assert untouched(vsphere, vm)


def test_a_wrong_certificate_or_thumbprint_is_refused(ansible, vsphere, make_vm):
    vm = make_vm()
    attach = task("attach", name=vm.name, vmdata=vmdata("web-tls"))
    system_trust = ansible.run([attach], defaults={"ca_file": "/etc/ssl/certs/ca-certificates.crt"})
    pinned_wrong = ansible.run([attach], defaults={"thumbprint": "ab" * 32})
    for run in (system_trust, pinned_wrong):
        assert run.rc != 0
        result = run.task("attach")
        assert result["_status"] == "failed" and "TLS verification" in result["msg"], result["msg"]
    assert re.search(r"self.signed certificate", system_trust.task("attach")["msg"])
    assert "pinned thumbprint" in pinned_wrong.task("attach")["msg"]
    assert untouched(vsphere, vm)


def test_vms_fan_out_goes_on_past_a_bad_vm(ansible, vcsim_faults, vsphere, make_vm):
    vms = [make_vm(powered_on=i % 2 == 0) for i in range(4)]
    ansible.secrets += [f"Fleet-pw-{i}" for i in range(4)]
    entries = [
        {"vm": vm.name, "vmdata": {**vmdata(f"node-{i}", i), "password": f"{{{{ lookup('ansible.builtin.env', "
                                   f"'PW{i}') }}}}"}}
        for i, vm in enumerate(vms)
    ]  # fmt: skip
    entries.insert(2, {"vm": "no-such-vm", "vmdata": vmdata("ghost", 9)})
    entries.insert(4, {"vm": vms[0].name, "vmdata": {"metadata": {"vm-id": " "}}})  # bad input: a blank vm-id
    run = ansible.run(
        [{**task("fleet", vms=entries, concurrency=3), "ignore_errors": True}],
        env={f"PW{i}": f"Fleet-pw-{i}" for i in range(4)},
    )
    result = run.task("fleet")
    assert result["_status"] == "failed" and result["msg"].startswith("2 of 6 VMs failed: "), result["msg"]
    assert result["summary"] == {"total": 6, "changed": 4, "failed": 0, "bad_input": 2}  # not found: bad input
    by_index = {r["index"]: r for r in result["results"]}
    assert [r["index"] for r in result["results"]] == list(range(6))
    assert by_index[2]["error"] == "no VM named 'no-such-vm'" and by_index[2]["exit_status"] == 2
    assert by_index[4]["error"].startswith("vms[4].metadata.vm-id: ") and by_index[4]["exit_status"] == 2
    for i, vm in enumerate(vms):
        assert by_index[[0, 1, 3, 5][i]]["changed"] is True
        drive = drive_of(vcsim_faults, vsphere, vm)
        assert (drive.hostname, drive.password) == (f"node-{i}", f"Fleet-pw-{i}")


def test_fleet_playbook_of_docs_ansible_md(ansible, vcsim_faults, vsphere, make_vm):
    """docs/ansible.md's fleet playbook: an inventory of VMs, a task per host delegated to localhost (forks), then
    the same content through vms: built from hostvars (nothing left to change)."""
    vms = [make_vm(powered_on=i == 1) for i in range(3)]
    entry = {"vm": "{{ inventory_hostname }}", "vmdata": "{{ config_drive }}"}
    inventory = {"web": {"hosts": {vm.name: {"config_drive": vmdata(f"web-{i}", i)} for i, vm in enumerate(vms)},
                         "vars": {"config_drive_entry": entry}}}  # fmt: skip
    per_host = {"name": "per host", DRIVE: {"name": "{{ inventory_hostname }}", "vmdata": "{{ config_drive }}"},
                "delegate_to": "localhost"}  # fmt: skip
    entries = "{{ ansible_play_hosts | map('extract', hostvars, 'config_drive_entry') | list }}"
    fan_out = {"name": "fan out", DRIVE: {"vms": entries, "concurrency": 2}, "run_once": True,
               "delegate_to": "localhost"}  # fmt: skip
    plays = [ansible.with_defaults({"hosts": "web", "gather_facts": False, "tasks": [per_host, fan_out]})]
    run = ansible.playbook(plays, inventory=inventory, options=["--forks", "3"])
    assert run.rc == 0, run.output
    per_host_results = run.tasks("per host")
    assert len(per_host_results) == 3 and all(r["changed"] for r in per_host_results)
    fan = run.task("fan out")
    assert fan["changed"] is False and fan["summary"] == {"total": 3, "changed": 0, "failed": 0, "bad_input": 0}
    assert [r["vm"] for r in fan["results"]] == [vm.name for vm in vms]
    for i, vm in enumerate(vms):
        assert drive_of(vcsim_faults, vsphere, vm).hostname == f"web-{i}"


def test_info_on_one_vm_and_on_the_datacenter(ansible, tool, vsphere, make_vm):
    with_drive, without = make_vm(), make_vm()
    iso = attach_with_package(tool, with_drive, "web-info", password="Info-pw-42")
    ansible.secrets.append("Info-pw-42")
    run = ansible.run(
        [
            task("one", INFO, name=with_drive.name),
            task("datacenter", INFO, datacenter="DC0"),
            task("folder", INFO, folder="/DC0/vm"),
            {**task("no such folder", INFO, datacenter="DC0", folder="nowhere"), "ignore_errors": True},
        ]
    )
    assert run.rc == 0, run.output
    one = run.task("one")
    assert one["changed"] is False and len(one["drives"]) == 1
    drive = one["drives"][0]
    assert (drive["vm"], drive["attached"], drive["iso"], drive["matches_record"]) == (with_drive.name, True, iso, True)
    assert drive["content"]["hostname"] == "web-info" and drive["content"]["password_set"] is True
    # the fleet read (the package's audit): one entry per VM with a drive, none for a VM without
    fleet = run.task("datacenter")
    by_name = {d["vm"]: d for d in fleet["drives"]}
    row = by_name[with_drive.name]
    assert (row["state"], row["attention"], row["path"], row["id"]) == ("ok", False, iso, with_drive._moId)
    assert without.name not in by_name
    summary = fleet["summary"]
    assert summary["vms"] >= 4 and summary["datastores"] >= 1
    assert sum(summary["states"].values()) == len(fleet["drives"])
    assert summary["attention"] == sum(1 for d in fleet["drives"] if d["attention"])
    in_folder = {d["vm"]: d for d in run.task("folder")["drives"]}
    assert in_folder[with_drive.name]["state"] == "ok" and "orphan" not in {d["state"] for d in in_folder.values()}
    nowhere = run.task("no such folder")
    assert nowhere["_status"] == "failed" and "no VM folder 'nowhere'" in nowhere["msg"]


def test_no_password_at_vvv(ansible, vcsim_faults, vsphere, make_vm):
    """-vvv prints module arguments and results: every option that carries a password is used here at once, and
    none of them shows (every run is checked for the harness password and the registered ones)."""
    vm, other, third = make_vm(), make_vm(), make_vm()
    secrets = {"DRIVE_PASSWORD": "Vvv-drive-pw-1", "VMDATA_PW": "Vvv-vmdata-pw-2", "ENTRY_PW": "Vvv-entry-pw-3",
               "NEW_PW": "Vvv-entry-pw-4"}  # fmt: skip
    ansible.secrets += list(secrets.values())

    def from_env(name: str) -> str:
        return f"{{{{ lookup('ansible.builtin.env', '{name}') }}}}"

    entries = [{"vm": name, "vmdata": {**vmdata(f"web-vvv{i}", i), "password": from_env("ENTRY_PW")}}
               for i, name in ((2, other.name), (3, third.name))]  # fmt: skip
    run = ansible.run(
        [
            task("attach", name=vm.name, vmdata={**vmdata("web-vvv"), "password": from_env("VMDATA_PW")},
                 vm_password=from_env("DRIVE_PASSWORD")),
            task("fleet attach", vms=entries),
            task("fleet update", vms=[{"vm": third.name, "password": from_env("NEW_PW")}]),
            task("rotate", name=other.name, reset_password=True),
        ],
        verbosity=3,
        env=secrets,
    )  # fmt: skip
    assert run.rc == 0, run.output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.stdout  # -vvv did print the (masked) arguments
    assert drive_of(vcsim_faults, vsphere, vm).password == "Vvv-drive-pw-1"  # vm_password overrides vmdata's
    assert run.task("fleet update")["summary"]["changed"] == 1
    third_drive = drive_of(vcsim_faults, vsphere, third)
    assert (third_drive.password, third_drive.hostname) == ("Vvv-entry-pw-4", "web-vvv3")  # only the password
    rotate = run.task("rotate")
    assert rotate["changed"] is True and "password" not in rotate
    generated = drive_of(vcsim_faults, vsphere, other).password
    assert generated not in ("Vvv-entry-pw-3", None)
    leaked = generated in run.output  # a bool: pytest would print the strings compared
    assert not leaked, "the generated password appears in the -vvv output"


def test_reset_password_returned_only_when_asked(ansible, tool, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    attach_with_package(tool, vm, "web-reset")
    run = ansible.run([task("reset", name=vm.name, reset_password=True, return_password=True)])
    assert run.rc == 0, run.output
    result = run.task("reset")
    assert result["changed"] is True and len(result["password"]) == 20
    assert drive_of(vcsim_faults, vsphere, vm).password == result["password"]


def test_missing_package_is_reported(ansible, tmp_path):
    """An interpreter without esxi-configdrive: Ansible's missing-library message, not a traceback."""
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    interpreter = {"ansible_python_interpreter": str(bare / "bin/python")}
    run = ansible.run([{**task("attach", name="x", vmdata=vmdata("x")), "vars": interpreter}])
    result = run.task("attach")
    assert run.rc != 0 and result["_status"] == "failed"
    assert "Failed to import the required Python library (esxi-configdrive)" in result["msg"], result["msg"]
    assert "esxi_configdrive" in result["import_error"]


def test_a_static_network_and_a_new_instance_id(ansible, vcsim_faults, vsphere, make_vm, tmp_path):
    vm = make_vm()
    network = {"interfaces": [{"addresses": ["10.1.2.3/24"], "gateway4": "10.1.2.1"}], "dns": ["10.1.0.2"]}
    args = {"name": vm.name, "vmdata": vmdata("db-1"), "network": network, "new_instance_id": True}
    run = ansible.run([task("attach", **args), task("again", **args)])
    assert run.rc == 0, run.output
    assert run.task("attach")["changed"] is True and run.task("again")["changed"] is False
    drive = drive_of(vcsim_faults, vsphere, vm)
    assert drive.vm_id == vm.config.instanceUuid  # not the vmdata's vm-id
    mac = next(d.macAddress for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard))
    link, net = drive.network_data["links"][0], drive.network_data["networks"][0]
    assert link["ethernet_mac_address"] == mac.lower() and (net["ip_address"], net["netmask"]) == (
        "10.1.2.3",
        "255.255.255.0",
    )
    assert net["routes"][0] == {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.1.2.1"}


def test_transport_guestinfo(ansible, vcsim_faults, vsphere, make_vm):
    """transport: guestinfo writes the keys on a running VM in one reconfigure; a password only with
    guestinfo_password (then the result says who can read it); the same again changes nothing; absent clears."""
    vm = make_vm(powered_on=True)
    ansible.secrets.append("Guestinfo-pw-1234")
    args = {"name": vm.name, "vmdata": vmdata("gi-1"), "vm_password": PASSWORD_FROM_ENV, "transport": "guestinfo"}
    env = {"DRIVE_PASSWORD": "Guestinfo-pw-1234"}
    refused = ansible.run([task("refused", **args)], env=env)
    assert refused.rc != 0 and "guestinfo_password" in refused.output and record_of(vsphere, vm) == {}
    run = ansible.run([task("attach", **args, guestinfo_password=True), task("again", **args, guestinfo_password=True),
                       task("absent", name=vm.name, state="absent")], env=env)  # fmt: skip
    assert run.rc == 0, run.output
    first, again = run.task("attach"), run.task("again")
    assert first["changed"] is True and first["transport"] == "guestinfo"
    assert first["actions"] == ["wrote guestinfo keys guestinfo.metadata, guestinfo.userdata, guestinfo.vendordata"]
    assert "vCenter" in first["warnings"][0] and again["changed"] is False
    assert run.task("absent")["changed"] is True and record_of(vsphere, vm) == {}
    assert not [o.key for o in get_property(vsphere, vm, "config.extraConfig") or [] if o.key.startswith("guestinfo.")
                and o.value]  # fmt: skip


def test_nocloud_transport_attach_again_move_and_fan_out(ansible, vcsim_faults, vsphere, make_vm):
    """``transport: nocloud``: a NoCloud seed, idempotent; a transport change on a present VM is the one-swap move;
    the vms fan-out takes a per-entry transport."""
    from esxi_configdrive.iso import read_drive
    from esxi_configdrive.transport import Transport

    vm, fleet = make_vm(), [make_vm(), make_vm()]
    args = {"name": vm.name, "vmdata": vmdata("web-nc"), "transport": "nocloud"}
    run = ansible.run(
        [
            task("seed", **args),
            task("seed again", **args),
            task("move to config-2", name=vm.name, transport="configdrive"),
            task("fleet", vms=[{"vm": v.name, "vmdata": vmdata(f"nc-{i}", i + 2), "transport": "nocloud"}
                               for i, v in enumerate(fleet)]),
        ]
    )  # fmt: skip
    assert run.rc == 0, run.output
    seed, again, moved = run.task("seed"), run.task("seed again"), run.task("move to config-2")
    assert seed["changed"] is True and seed["transport"] == "nocloud"
    assert again["changed"] is False and again["actions"] == []
    assert moved["changed"] is True and "transport" not in moved
    assert fetch_file(vcsim_faults, vsphere, seed["iso"]) is None  # the seed went once the swap was made
    assert read_drive(fetch_file(vcsim_faults, vsphere, moved["iso"]))[0] is Transport.CONFIGDRIVE
    assert record_of(vsphere, vm).get("transport") is None
    for v in fleet:
        paths = [p for p in iso_paths(vsphere, v) if "ConfigDrive/" in p]
        assert read_drive(fetch_file(vcsim_faults, vsphere, paths[0]))[0] is Transport.NOCLOUD
        assert record_of(vsphere, v)["transport"] == "nocloud"
    refused = ansible.run([task("detach with a transport", name=vm.name, state="detached", transport="nocloud")])
    assert refused.rc != 0 and "transport: does not apply with state=detached" in refused.output


def test_present_without_transport_keeps_the_drives_own(ansible, vcsim_faults, vsphere, make_vm):
    """A task re-run without ``transport:`` on a NoCloud or guestinfo VM changes nothing (check mode and real),
    as the CLI's plain attach: the transport's default is the drive's own, a config drive for a new one."""
    seed_vm, keys_vm = make_vm(), make_vm(powered_on=True)
    seed = {"name": seed_vm.name, "vmdata": vmdata("keep-nc")}
    keys = {"name": keys_vm.name, "vmdata": vmdata("keep-gi")}
    first = ansible.run([task("seed", **seed, transport="nocloud"), task("keys", **keys, transport="guestinfo")])
    assert first.rc == 0, first.output
    vcsim_faults.reset_faults()
    tasks = [task("seed again", **seed), task("keys again", **keys)]
    for run in (ansible.run(tasks, check=True), ansible.run(tasks)):
        assert run.rc == 0, run.output
        assert run.task("seed again")["changed"] is False and run.task("keys again")["changed"] is False
    calls = vcsim_faults.counters()["soap_by_method"]
    assert "ReconfigVM_Task" not in calls and "PUT" not in vcsim_faults.counters()["folder_requests"], calls
    assert (
        record_of(vsphere, seed_vm)["transport"] == "nocloud"
        and record_of(vsphere, keys_vm)["transport"] == "guestinfo"
    )

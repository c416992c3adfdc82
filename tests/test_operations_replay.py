"""The tool's operations replayed from cassettes recorded against vcsim: no network, no Go, no simulator.

Recorded with ``scripts/record-cassettes`` (CASSETTE_MODE=record runs the same tests against the live harness).
Downloads in the cassettes have the VM's password masked, so a replayed drive that carries a password reads
back with ``*`` in its place; the scenarios set the password last for that reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cassette import RECORD
from pyVmomi import vim
from sample_data import ED25519_KEY, RSA_KEY
from tool_fixtures import settings_for
from vsphere_harness import create_vm, destroy_vm

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.cli import main
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.drive.devices import describe_device
from esxi_configdrive.drive.state import DriveState
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere.inventory import fetch_vm_facts, find_vm

pytestmark = pytest.mark.replay

REPLAY_PASSWORD = "Replay-VM-Passw0rd"  # registered as a secret: scrubbed from every cassette
OFF_VM = "replay-powered-off"


def data(**changes: Any) -> VmData:
    obj = {
        "metadata": {
            "vm-id": "5d7e9c10-1b2a-4c3d-8e4f-5a6b7c8d9e0f",
            "instance-id": "i-9-99-VM",
            "local-hostname": "replayed",
            "public-keys": [ED25519_KEY],
        },
        "userdata": "#cloud-config\nruncmd: [[sh, -c, 'echo replayed']]\n",
    }
    obj.update(changes)
    return VmData.from_dict(obj)


def drive_of(session: Session, name: str) -> dict[str, Any] | None:
    state = DriveState.of(fetch_vm_facts(session, find_vm(session, name)))
    return None if state.cdrom is None else describe_device(state.facts.devices, state.cdrom)


def write_inputs(folder: Path) -> tuple[Path, Path]:
    """The VM data file (``data()``) and an SSH key file, as the CLI scenarios hand them over."""
    vmdata, keyfile = folder / "vm.json", folder / "key.pub"
    vmdata.write_text(json.dumps(data().to_dict()))
    keyfile.write_text(RSA_KEY + "\n")
    return vmdata, keyfile


def cli_against(target: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable:
    """The CLI in this process, connected to ``target`` by GOVC_* variables: ``cli(*args)`` -> its JSON result."""
    monkeypatch.setenv("GOVC_URL", target.url)
    monkeypatch.setenv("GOVC_USERNAME", target.username)
    monkeypatch.setenv("GOVC_PASSWORD", target.password)
    if target.ca_file:
        monkeypatch.setenv("GOVC_TLS_CA_CERTS", target.ca_file)

    def cli(*args: str) -> dict[str, Any]:
        status = main([*args, "--json"])
        out = capsys.readouterr().out
        assert status == 0, out
        return json.loads(out)

    return cli


def test_powered_on_vm_attach_update_detach_remove(vsphere_cassettes) -> None:
    with (
        vsphere_cassettes.cassette("ops_powered_on", secrets=[REPLAY_PASSWORD]),
        Session(settings_for(vsphere_cassettes.target)) as session,
    ):
        tool = ConfigDriveController(session, task_timeout=20)
        vm = "DC0_H0_VM1"
        attached = tool.attach(vm, data())
        assert attached.changed
        drive = drive_of(session, vm)
        assert drive["controller"] == "sata" and drive["connected"] and drive["start_connected"]
        assert tool.attach(vm, data()).changed is False

        status = tool.status(vm).to_dict()
        assert status["file_exists"] and status["matches_record"]
        assert status["content"]["hostname"] == "replayed"

        updated = tool.update(vm, overrides={"public_keys": [RSA_KEY]})
        assert updated.changed and updated.iso != attached.iso
        assert any(a.startswith("deleted") and attached.iso in a for a in updated.actions)
        with_password = tool.update(vm, overrides={"password": REPLAY_PASSWORD})
        assert with_password.changed

        detached = tool.detach(vm)
        assert detached.changed and drive_of(session, vm)["iso"] is None  # emptied, not removed: VM runs
        assert tool.remove(vm).changed
        assert drive_of(session, vm) is None


def test_powered_off_vm_through_the_command_line(vsphere_cassettes, tmp_path, monkeypatch, capsys) -> None:
    target = vsphere_cassettes.target
    vmdata, keyfile = write_inputs(tmp_path)
    password_file = tmp_path / "pw"
    password_file.write_text(REPLAY_PASSWORD + "\n")
    cli = cli_against(target, monkeypatch, capsys)

    with (
        vsphere_cassettes.cassette("ops_powered_off_cli", secrets=[REPLAY_PASSWORD]),
        Session(settings_for(target)) as session,
    ):
        # a VM of the scenario's own, powered off, with its own CD-ROM on IDE 0:0 (its creation is
        # recorded and replayed like the rest)
        create_vm(session.si, OFF_VM)
        first = cli("attach", OFF_VM, "--vmdata", str(vmdata))
        assert first["changed"] and first["iso"].endswith(f"ConfigDrive/{OFF_VM}/configdrive.iso")
        drive = drive_of(session, OFF_VM)
        assert drive["controller"] == "ide" and drive["start_connected"] and not drive["connected"]
        assert cli("attach", OFF_VM, "--vmdata", str(vmdata))["changed"] is False

        plan = cli("update", OFF_VM, "--ssh-key-file", str(keyfile), "--dry-run")
        assert plan["dry_run"] and plan["changed"]
        cli("update", OFF_VM, "--ssh-key-file", str(keyfile))
        cli("update", OFF_VM, "--password-file", str(password_file))
        status = cli("status", OFF_VM)
        assert status["content"]["public_keys"] == 1 and status["content"]["password_set"]
        assert REPLAY_PASSWORD not in json.dumps(status)

        assert cli("detach", OFF_VM)["changed"]
        assert drive_of(session, OFF_VM) is None  # powered off: the device is removed
        removed = cli("remove", OFF_VM)  # detach keeps the emptied folder for the next attach; remove takes it
        assert removed["changed"] and any("deleted" in a for a in removed["actions"])
        assert cli("remove", OFF_VM)["changed"] is False
        destroy_vm(session.si, vim.VirtualMachine(find_vm(session, OFF_VM)._moId, session.si._stub))


def test_replayed_download_is_a_readable_drive(vsphere_cassettes) -> None:
    """status downloads the ISO: in replay that is the recorded (masked) body, still a valid config drive."""
    with (
        vsphere_cassettes.cassette("ops_status_download", secrets=[REPLAY_PASSWORD]),
        Session(settings_for(vsphere_cassettes.target)) as session,
    ):
        tool = ConfigDriveController(session, task_timeout=20)
        vm = "DC0_C0_RP0_VM1"
        tool.attach(vm, data(password=REPLAY_PASSWORD))
        from esxi_configdrive.vsphere.datastore import DatastoreFiles
        from esxi_configdrive.vsphere_values import DatastorePath

        facts = fetch_vm_facts(session, find_vm(session, vm))
        iso = DatastoreFiles(session, facts.datacenter, facts.datacenter_path).download(
            DatastorePath.parse(tool.status(vm).iso), 64 << 20
        )
        drive = read_iso(iso)
        assert drive.vm_id == data().vm_id and drive.hostname == "replayed"
        if vsphere_cassettes.mode == RECORD:
            assert drive.password == REPLAY_PASSWORD
        else:
            assert drive.password == "*" * len(REPLAY_PASSWORD)
        tool.remove(vm)


NOCLOUD_VM = "replay-nocloud"


def test_nocloud_seed_through_the_command_line(vsphere_cassettes, tmp_path, monkeypatch, capsys) -> None:
    """The NoCloud transport's path (issue 21): attach, unchanged re-run, update, status, the moves to a config
    drive and back, detach, remove. No password in this scenario: a seed carries it only inside the vendor data's
    base64 MIME part, which the cassettes' masking of downloads does not reach."""
    target = vsphere_cassettes.target
    vmdata, keyfile = write_inputs(tmp_path)
    cli = cli_against(target, monkeypatch, capsys)

    with (
        vsphere_cassettes.cassette("ops_nocloud_cli", secrets=[REPLAY_PASSWORD]),
        Session(settings_for(target)) as session,
    ):
        create_vm(session.si, NOCLOUD_VM)
        first = cli("attach", NOCLOUD_VM, "--vmdata", str(vmdata), "--transport", "nocloud")
        assert first["changed"] and first["transport"] == "nocloud"
        again = cli("attach", NOCLOUD_VM, "--vmdata", str(vmdata), "--transport", "nocloud")
        assert again["changed"] is False
        updated = cli("update", NOCLOUD_VM, "--ssh-key-file", str(keyfile))
        assert updated["changed"] and updated["transport"] == "nocloud"
        status = cli("status", NOCLOUD_VM)
        assert status["transport"] == "nocloud" and status["matches_record"]
        assert status["content"]["public_keys"] == 1 and status["content"]["hostname"] == "replayed"
        moved = cli("update", NOCLOUD_VM, "--transport", "configdrive")
        assert moved["changed"] and "transport" not in moved
        assert "transport" not in cli("status", NOCLOUD_VM)
        back = cli("update", NOCLOUD_VM, "--transport", "nocloud")
        assert back["changed"] and back["transport"] == "nocloud"
        assert cli("detach", NOCLOUD_VM)["transport"] == "nocloud"
        assert cli("remove", NOCLOUD_VM)["changed"]
        destroy_vm(session.si, vim.VirtualMachine(find_vm(session, NOCLOUD_VM)._moId, session.si._stub))

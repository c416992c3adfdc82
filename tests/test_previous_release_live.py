"""Drives attached by the previous release are recognised, updated, detached and removed by this one.

The previous release (0.1.0, commit 7e465ed: the code before the redesign) is kept as a git archive of its
package in tests/data/ (re-create it with ``git archive 7e465ed esxi_configdrive | gzip -n -9``); the test unpacks
it under another package name and attaches with it, then operates with the current code on the same vcsim.
"""

from __future__ import annotations

import importlib
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sample_data import ED25519_KEY, RSA_KEY
from tool_fixtures import fetch_file, folder_listing, iso_paths, record_of

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.controller import ConfigDriveController

pytestmark = pytest.mark.live

ARCHIVE = Path(__file__).parent / "data" / "esxi_configdrive-0.1.0-7e465ed.tar.gz"
PREVIOUS = "esxi_configdrive_previous"


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The previous release's package, importable as ``esxi_configdrive_previous`` (relative imports only)."""
    root = tmp_path_factory.mktemp("previous")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(root, filter="data")
    (root / "esxi_configdrive").rename(root / PREVIOUS)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(f"{PREVIOUS}.controller")
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PREVIOUS or m.startswith(PREVIOUS + ".")]:
            del sys.modules[name]


def old_data(previous: Any) -> Any:
    vmdata = importlib.import_module(f"{PREVIOUS}.vmdata")
    return vmdata.VmData.from_dict(
        {
            "metadata": {"vm-id": "0b5f6b4e-3f8d-4c1e-9d2a-7e1f2a3b4c5d", "local-hostname": "old-1",
                         "public-keys": [ED25519_KEY]},
            "userdata": "#cloud-config\n# attached by 0.1.0\n",
            "password": "Old-Passw0rd-1",
        }
    )  # fmt: skip


def old_session(previous: Any, sim: Any) -> Any:
    connection = importlib.import_module(f"{PREVIOUS}.vsphere.connection")
    env = {"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
           "GOVC_TLS_CA_CERTS": sim.ca_file}  # fmt: skip
    return connection.Session(connection.ConnectionSettings.from_sources(env=env, prompt=False))


@pytest.mark.parametrize("powered_on", [False, True])
def test_a_drive_attached_by_the_previous_release(previous, session, vcsim_faults, vsphere, make_vm, powered_on):
    vm = make_vm(powered_on=powered_on)
    with old_session(previous, vcsim_faults) as s:
        attached = previous.ConfigDriveController(s, task_timeout=20).attach(vm.name, old_data(previous))
    assert attached.changed
    old_iso = attached.iso
    old_drive = read_iso(fetch_file(vcsim_faults, vsphere, old_iso))
    assert old_drive.empty_network_data  # 0.1.0 wrote CloudStack's {}: kept on update

    tool = ConfigDriveController(session, task_timeout=20)
    status = tool.status(vm.name).to_dict()
    assert status["attached"] and status["matches_record"] and status["content"]["hostname"] == "old-1"
    same = VmData.from_dict(old_data(previous).to_dict())
    same.empty_network_data = True
    # 0.1.0 wrote no meta_data.json `name` for a drive without public-hostname; glean reads the host name there
    upgraded = tool.attach(vm.name, same)
    assert upgraded.changed
    assert read_iso(fetch_file(vcsim_faults, vsphere, upgraded.iso)).metadata == same.metadata
    assert tool.attach(vm.name, same).changed is False  # from then on the very same drive

    updated = tool.update(vm.name, overrides={"public_keys": [RSA_KEY]})
    assert updated.changed and updated.iso not in (old_iso, upgraded.iso)
    new_drive = read_iso(fetch_file(vcsim_faults, vsphere, updated.iso))
    assert new_drive.public_keys == [RSA_KEY] and new_drive.hostname == "old-1"
    assert new_drive.password == "Old-Passw0rd-1" and new_drive.empty_network_data
    assert fetch_file(vcsim_faults, vsphere, old_iso) is None  # the old file is gone, the record follows
    assert record_of(vsphere, vm)["iso"] == updated.iso == iso_paths(vsphere, vm)[-1]

    assert tool.detach(vm.name).changed
    assert fetch_file(vcsim_faults, vsphere, updated.iso) is None
    assert tool.remove(vm.name).changed
    assert folder_listing(vsphere, str(updated.iso).rsplit("/", 1)[0]) is None
    assert record_of(vsphere, vm).get("iso") is None

"""Fixtures and helpers for testing the tool's vSphere operations against the live harness (a pytest plugin
loaded from conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from sample_data import cloud_init_path, extract_with_7z
from vsphere_harness import Vcsim, cdroms, download, get_property

from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.record import PREFIX
from esxi_configdrive.vsphere.connection import ConnectionSettings, Session
from esxi_configdrive.vsphere_values import DatastorePath


def settings_for(sim: Any, **overrides: Any) -> ConnectionSettings:
    """Connection settings for the harness, the way an admin gives them: GOVC_* variables."""
    env = {"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password}
    if getattr(sim, "ca_file", None):
        env["GOVC_TLS_CA_CERTS"] = sim.ca_file
    settings = ConnectionSettings.from_sources(env=env, prompt=False)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture
def session(vcsim_faults: Vcsim) -> Iterator[Session]:
    s = Session(settings_for(vcsim_faults)).connect()
    yield s
    s.close()


@pytest.fixture
def tool(session: Session) -> ConfigDriveController:
    """The controller on a fresh session, with a short task timeout so a hang fails fast."""
    return ConfigDriveController(session, task_timeout=20)


# ---- looking at the result with the harness's own pyVmomi session -----------------------------------------


def record_of(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> dict[str, str]:
    extra = get_property(si, vm, "config.extraConfig") or []
    out: dict[str, str] = {}
    for opt in extra:
        if opt.key.startswith(PREFIX):
            if opt.value in ("", None):
                out.pop(opt.key[len(PREFIX) :], None)
            else:
                out[opt.key[len(PREFIX) :]] = opt.value
    return out


def drives_of(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualCdrom]:
    return cdroms(vm)


def iso_paths(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> list[str]:
    return [d.backing.fileName for d in cdroms(vm) if isinstance(d.backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)]


def fetch_file(sim: Vcsim, si: vim.ServiceInstance, path: str) -> bytes | None:
    """The bytes of ``[ds] path`` on the simulator's datastore, or None when it does not exist."""
    p = DatastorePath.parse(path)
    response = download(sim, si, p.datastore, p.path)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, f"GET {path}: {response.status_code}"
    return response.content


def folder_listing(si: vim.ServiceInstance, folder: str) -> list[str] | None:
    """ISO files in a datastore folder (None when the folder does not exist), through the datastore browser."""
    from vsphere_harness import find_datastore, wait_for_task

    p = DatastorePath.parse(folder)
    ds = find_datastore(si, p.datastore)
    spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"])
    try:
        result = wait_for_task(si, ds.browser.SearchDatastore_Task(str(p), spec))
    except Exception as e:  # the harness helper raises its own TaskFailed wrapping the fault
        if "FileNotFound" in repr(e) or "not found" in str(e).lower():
            return None
        raise
    return sorted(f.path for f in (result.file or []))


def cloud_init_read(iso: bytes, workdir: Path) -> dict[str, Any]:
    """Extract the ISO with 7-Zip and read it with cloud-init's own ConfigDriveReader (Debian's package), in a
    child process so cloud-init's modules stay out of the test process."""
    iso_path = workdir / "drive.iso"
    iso_path.write_bytes(iso)
    root = extract_with_7z(iso_path, workdir / "extracted")
    code = """
import base64, json, sys
from cloudinit.sources.helpers import openstack
r = openstack.ConfigDriveReader(sys.argv[1]).read_v2()
md = r["metadata"]
print(json.dumps({
    "uuid": md.get("uuid"), "hostname": md.get("hostname"), "public_keys": md.get("public_keys"),
    "admin_pass": md.get("admin_pass"),
    "userdata": base64.b64encode(r.get("userdata") or b"").decode(),
    "vendordata": r.get("vendordata"), "networkdata": r.get("networkdata"),
}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": cloud_init_path(), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)

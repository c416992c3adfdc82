"""A standalone ESXi host (no vCenter: ``ha-datacenter``, ``about.apiType == HostAgent``), as small sites, labs
and edge hosts run it: the whole command set through the command line on the harness in front of
``simulator.ESX()`` (``-esx``) and on stock ``vcsim -esx``; the free licence on it; and one scenario replayed
from a cassette recorded against the ESX harness (``scripts/record-cassettes``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cassette import RECORD, ReplayTarget, cassette_mode, use_cassette
from tool_fixtures import settings_for
from vsphere_harness import StockVcsim, Vcsim, connect, disconnect

from esxi_configdrive import VmData
from esxi_configdrive.cli import main
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.vsphere.connection import Session

ESX_VM = "ha-host_VM0"  # simulator.ESX() names its VMs after the host


@pytest.fixture(scope="module", params=["harness", "stock"])
def esx(request: pytest.FixtureRequest, vcsim_binary: Path) -> Iterator[Vcsim]:
    kind = StockVcsim if request.param == "stock" else Vcsim
    with kind(vcsim_binary, extra_args=["-esx"]) as sim:
        yield sim


@pytest.fixture
def cli(esx: Vcsim, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    for key, value in {"GOVC_URL": esx.url, "GOVC_USERNAME": esx.username, "GOVC_PASSWORD": esx.password,
                       "GOVC_TLS_CA_CERTS": esx.ca_file}.items():  # fmt: skip
        monkeypatch.setenv(key, value)

    def run(*args: str, many: bool = False) -> tuple[int, Any]:
        """(exit status, the JSON printed: one object, or with ``many`` the list of lines, audit's and batch's)."""
        status = main([*args, "--json"])
        captured = capsys.readouterr()
        lines = [json.loads(line) for line in (captured.out or captured.err).splitlines() if line.startswith("{")]
        return status, lines if many else lines[-1]

    return run


@pytest.mark.live
def test_the_whole_command_set_on_a_standalone_host(esx, cli, tmp_path):
    si = connect(esx)
    try:
        assert si.content.about.apiType == "HostAgent"
        assert [dc.name for dc in si.content.rootFolder.childEntity] == ["ha-datacenter"]
    finally:
        disconnect(si)
    vmdata = tmp_path / "vm.json"
    vmdata.write_text(json.dumps({"metadata": {"vm-id": str(uuid.uuid4())}, "userdata": "#cloud-config\n"}))
    vm = ESX_VM

    status, attached = cli("attach", vm, "--vmdata", str(vmdata))
    assert status == 0 and attached["changed"] and attached["iso"].startswith(f"[LocalDS_0] ConfigDrive/{vm}/")
    assert cli("attach", vm, "--vmdata", str(vmdata))[1]["changed"] is False
    status, shown = cli("status", vm)
    assert status == 0 and shown["iso"] == attached["iso"] and shown["attached"] is True
    status, updated = cli("update", vm, "--hostname", "edge-1")
    assert status == 0 and updated["iso"] != attached["iso"]
    status, new_password = cli("reset-password", vm)
    assert status == 0 and new_password["changed"]
    status, audited = cli("audit", many=True)
    assert status == 0 and {r["vm"]: r["state"] for r in audited}.get(vm) == "ok", audited
    status, refused = cli("prepare-migration", vm, "--host", "localhost.localdomain")
    assert status == 2 and "standalone ESXi host" in refused["error"] and "no other host" in refused["error"]
    status, detached = cli("detach", vm)
    assert status == 0 and detached["changed"]
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"vm": vm, "vmdata": json.loads(vmdata.read_text())}) + "\n")
    status, lines = cli("attach", "--batch", str(batch), many=True)
    assert status == 0, lines
    status, removed = cli("remove", vm)
    assert status == 0 and removed["changed"]
    assert cli("status", vm)[1]["attached"] is False


@pytest.mark.live
@pytest.mark.parametrize("esx", ["harness"], indirect=True)  # stock vcsim never raises RestrictedVersion
def test_a_free_licence_host_refuses_attach_and_keeps_nothing(esx, cli, tmp_path):
    vmdata = tmp_path / "vm.json"
    vmdata.write_text(json.dumps({"metadata": {"vm-id": str(uuid.uuid4())}}))
    esx.set_faults(restricted_version={"enabled": True, "calls": []})
    try:
        status, out = cli("attach", "ha-host_VM1", "--vmdata", str(vmdata))
    finally:
        esx.reset_faults()
    assert status == 1
    assert out["error"].startswith("the host's licence does not allow changes through the vSphere API"), out
    assert cli("status", "ha-host_VM1")[1]["attached"] is False


# ---- replayed ---------------------------------------------------------------------------------------------------


@pytest.fixture
def esx_target(request: pytest.FixtureRequest, vcsim_binary_if_recording: Path | None) -> Iterator[Any]:
    if vcsim_binary_if_recording is None:
        yield ReplayTarget()
        return
    with Vcsim(vcsim_binary_if_recording, extra_args=["-esx"]) as sim:
        yield sim


@pytest.fixture
def vcsim_binary_if_recording(request: pytest.FixtureRequest) -> Path | None:
    return request.getfixturevalue("vcsim_binary") if cassette_mode() == RECORD else None


@pytest.mark.replay
def test_standalone_host_attach_update_detach_replayed(esx_target) -> None:
    secrets = [esx_target.password] if cassette_mode() == RECORD else []
    data = VmData.from_dict({"metadata": {"vm-id": "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"}, "userdata": "#x\n"})
    with (
        use_cassette("ops_standalone_esx", cassette_mode(), secrets=secrets),
        Session(settings_for(esx_target)) as session,
    ):
        tool = ConfigDriveController(session, task_timeout=20)
        attached = tool.attach("ha-host_VM1", data)
        assert attached.changed and attached.iso.startswith("[LocalDS_0] ConfigDrive/ha-host_VM1/")
        assert tool.status("ha-host_VM1").iso == attached.iso
        updated = tool.update("ha-host_VM1", overrides={"hostname": "edge-2"})
        assert updated.iso != attached.iso
        assert tool.remove("ha-host_VM1").changed

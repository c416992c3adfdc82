"""docs/privileges.md stays true: its roles use privilege IDs vCenter knows, govc and PowerCLI define the same roles,
and every SOAP method and /folder verb the tool really sends (counted by the harness) has a row in its table."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from pyVmomi import vmodl
from tool_fixtures import settings_for
from vsphere_harness import create_local_datastore

from esxi_configdrive import VmData
from esxi_configdrive.cli import main
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.vsphere.connection import Session

DOC = Path(__file__).resolve().parents[1] / "docs" / "privileges.md"
PRIVILEGE_ID = re.compile(r"\b(?:System|Datastore|VirtualMachine|Resource)\.[A-Za-z]+(?:\.[A-Za-z]+)?\b")


def doc() -> str:
    return DOC.read_text()


def govc_roles(text: str) -> dict[str, set[str]]:
    joined = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
    return {m[1]: set(m[2].split()) for m in re.finditer(r"^govc role\.create (\S+) (.+)$", joined, re.M)}


def powercli_roles(text: str) -> dict[str, set[str]]:
    pattern = re.compile(r"New-VIRole -Name (\S+) -Privilege \(Get-VIPrivilege -Id (.+?)\)", re.S)
    return {m[1]: {p.strip() for p in m[2].split(",")} for m in pattern.finditer(text)}


def table_rows(text: str) -> dict[str, str]:
    """The "API calls and their privileges" table: {call: privilege cell}."""
    section = text.split("## API calls and their privileges", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    return rows


# ---- the document itself ------------------------------------------------------------------------------------


def test_govc_and_powercli_define_the_same_roles():
    govc, powercli = govc_roles(doc()), powercli_roles(doc())
    assert set(govc) == {"esxi-configdrive", "esxi-configdrive-migrate", "esxi-configdrive-readonly"}
    assert govc == powercli
    assert govc["esxi-configdrive"] < govc["esxi-configdrive-migrate"]
    assert govc["esxi-configdrive-readonly"] < govc["esxi-configdrive"]


def test_the_roles_hold_every_privilege_the_table_names():
    named = {p for cell in table_rows(doc()).values() for p in PRIVILEGE_ID.findall(cell)}
    beyond = named - {p for p in named if p.startswith("System.")} - govc_roles(doc())["esxi-configdrive-migrate"]
    assert beyond == {"Resource.AssignVMToPool"}  # only when the pool changes: the doc says to add it then


# ---- against the harness ------------------------------------------------------------------------------------


@pytest.mark.live
def test_the_roles_use_privilege_ids_vcenter_knows(vsphere):
    """vcsim's AuthorizationManager holds ESXi's privilege list and refuses unknown IDs, as vCenter does."""
    manager = vsphere.content.authorizationManager
    with pytest.raises(vmodl.fault.InvalidArgument):  # the check can fail
        manager.AddAuthorizationRole(name=f"bogus-{uuid.uuid4().hex[:6]}", privIds=["VirtualMachine.Interact.NoSuch"])
    for name, privileges in govc_roles(doc()).items():
        unique = f"{name}-{uuid.uuid4().hex[:6]}"
        manager.AddAuthorizationRole(name=unique, privIds=sorted(privileges))
        [role] = [r for r in manager.roleList if r.name == unique]  # vcsim 0.24 returns no role id: find it by name
        try:
            assert privileges <= set(role.privilege), name
        finally:
            manager.RemoveAuthorizationRole(roleId=role.roleId, failIfUsed=False)


def vmdata() -> VmData:
    return VmData.from_dict({"metadata": {"vm-id": "7d0c4a51-2b6e-4f0a-9c3d-5e6f7a8b9c0d"}, "userdata": "#x\n"})


@pytest.mark.live
def test_every_call_the_tool_makes_is_in_the_table(vcsim_faults, make_vm, vsphere, tmp_path, monkeypatch, capsys):
    local = f"Priv-{uuid.uuid4().hex[:6]}"
    create_local_datastore(vsphere, "DC0_C0_H0", local)
    off, on, mig, *batch = [
        vm.name for vm in (make_vm(), make_vm(powered_on=True), make_vm(host="DC0_C0_H0"), make_vm(), make_vm())
    ]
    lines = [json.dumps({"vm": name, "vmdata": {"metadata": {"vm-id": str(uuid.uuid4())}}}) for name in batch]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines) + "\n")
    vcsim_faults.reset_faults()  # count only what the tool sends from here on

    session = Session(settings_for(vcsim_faults)).connect()
    tool = ConfigDriveController(session, task_timeout=20)
    tool.attach(off, vmdata())
    tool.attach(off, vmdata())
    tool.status(off)
    tool.update(off, overrides={"userdata": b"#y\n"})
    tool.reset_password(off)
    tool.detach(off, dry_run=True)
    tool.detach(off)
    tool.attach(off, vmdata())
    tool.remove(off)
    tool.attach(f"DC0/vm/{on}", vmdata())
    vcsim_faults.set_faults(locked_door={"enabled": True, "vms": [on], "timeout_seconds": 10})
    ConfigDriveController(session, force_eject=True, task_timeout=20).update(on, overrides={"userdata": b"#z\n"})
    vcsim_faults.set_faults(locked_door={"enabled": False})
    tool.attach(mig, vmdata(), datastore=local)
    tool.prepare_migration(mig, "DC0_C0_H1", migrate=True)
    tool.audit(verify=True)
    tool.audit(fix=True, dry_run=True)
    session.close()
    for key, value in {
        "GOVC_URL": vcsim_faults.url,
        "GOVC_USERNAME": vcsim_faults.username,
        "GOVC_PASSWORD": vcsim_faults.password,
        "GOVC_TLS_CA_CERTS": vcsim_faults.ca_file,
    }.items():
        monkeypatch.setenv(key, value)  # fmt: skip
    assert main(["attach", "--batch", str(tmp_path / "batch.jsonl"), "--json"]) == 0
    capsys.readouterr()

    counters = vcsim_faults.counters()
    seen = set(counters["soap_by_method"]) | {f"{verb} /folder" for verb in counters["folder_requests"]}
    exercised = {"ReconfigVM_Task", "AnswerVM", "RelocateVM_Task", "CopyDatastoreFile_Task", "FindByInventoryPath",
                 "SearchDatastore_Task", "PUT /folder", "GET /folder",
                 "HEAD /folder", "CurrentTime", "SearchDatastoreSubFolders_Task"}  # fmt: skip
    assert exercised <= seen, exercised - seen  # the scenario really ran every kind of call
    assert seen - set(table_rows(doc())) == set(), "calls docs/privileges.md does not list"


def test_the_folder_refusal_section_says_what_the_tool_says():
    """The 401/403 section quotes the tool's own words for the privileges and where they go, and every privilege
    named there is in every role (the read-only one included: status and audit download over /folder)."""
    from esxi_configdrive.vsphere.datastore import folder_privileges

    section = doc().split("## When `/folder` answers 401 or 403", 1)[1].split("\n## ", 1)[0]
    said = " ".join(folder_privileges("DC0", "LocalDS_0").split())
    assert said in " ".join(section.split())
    named = set(PRIVILEGE_ID.findall(said))
    assert named == {"System.View", "Datastore.Browse", "Datastore.FileManagement"}
    for role in govc_roles(doc()).values():
        assert named - {"System.View"} <= role
    assert "on datacenter DC0 and on datastore LocalDS_0" in said

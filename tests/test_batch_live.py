"""Batch mode against vcsim: many VMs, one made to fail, the rest done; results and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sample_data import ED25519_KEY
from tool_fixtures import fetch_file, iso_paths

from esxi_configdrive import read_iso
from esxi_configdrive.batch import read_batch
from esxi_configdrive.cli import main
from esxi_configdrive.errors import ValidationError

pytestmark = pytest.mark.live


def vmdata(i: int) -> dict:
    return {
        "metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}", "local-hostname": f"node-{i}",
                     "public-keys": [ED25519_KEY]},
        "userdata": f"#cloud-config\n# node {i}\n",
    }  # fmt: skip


def env_for(sim) -> dict[str, str]:
    return {
        **os.environ,
        "GOVC_URL": sim.url,
        "GOVC_USERNAME": sim.username,
        "GOVC_PASSWORD": sim.password,
        "GOVC_TLS_CA_CERTS": sim.ca_file,
    }


def run_cli(sim, args: list[str], monkeypatch, capsys) -> tuple[int, list[dict]]:
    for k, v in env_for(sim).items():
        if k.startswith("GOVC_"):
            monkeypatch.setenv(k, v)
    status = main(args)
    out = capsys.readouterr().out
    return status, [json.loads(line) for line in out.splitlines() if line.strip()]


def test_batch_attach_update_with_one_failure(vcsim_faults, vsphere, make_vm, tmp_path, monkeypatch, capsys):
    vms = [make_vm(powered_on=i % 2 == 0) for i in range(6)]
    names = [vm.name for vm in vms]
    lines = [json.dumps({"vm": name, "vmdata": vmdata(i)}) for i, name in enumerate(names)]
    lines.insert(3, json.dumps({"vm": "no-such-vm", "vmdata": vmdata(99)}))  # fails on vSphere: not found
    lines.insert(5, '{"vm": "x", "vmdata": {"metadata": {"vm-id": " "}}}')  # bad input: a blank vm-id
    batch = tmp_path / "attach.jsonl"
    batch.write_text("# fleet attach\n" + "\n".join(lines) + "\n")
    vcsim_faults.set_faults(reconfig_failures={"count": 1, "vms": [names[4]]})

    status, results = run_cli(
        vcsim_faults, ["attach", "--batch", str(batch), "--concurrency", "3"], monkeypatch, capsys
    )
    by_vm = {r["vm"]: r for r in results}
    assert len(results) == 8
    assert status == 1  # some VM failed on vSphere
    assert by_vm["no-such-vm"]["exit_status"] == 2 and "no VM named" in by_vm["no-such-vm"]["error"]
    assert by_vm["x"]["exit_status"] == 2 and "vm-id" in by_vm["x"]["error"]
    assert by_vm[names[4]]["exit_status"] == 1 and "GenericVmConfigFault" in by_vm[names[4]]["error"]
    for i, name in enumerate(names):
        if i == 4:
            assert iso_paths(vsphere, vms[i]) == []  # the failed one is left as it was
            continue
        assert by_vm[name]["changed"] is True, by_vm[name]
        drive = read_iso(fetch_file(vcsim_faults, vsphere, iso_paths(vsphere, vms[i])[-1]))
        assert drive.hostname == f"node-{i}"
    assert sorted(r["line"] for r in results) == sorted({r["line"] for r in results})

    # a password rotation over the same fleet: every line its own password
    rotate = tmp_path / "rotate.jsonl"
    rotate.write_text("\n".join(json.dumps({"vm": n, "password": f"Rotated-{i}-pw"}) for i, n in enumerate(names)))
    vcsim_faults.reset_faults()
    status, results = run_cli(
        vcsim_faults, ["update", "--batch", str(rotate), "--concurrency", "4"], monkeypatch, capsys
    )
    by_vm = {r["vm"]: r for r in results}
    assert "attach first" in by_vm[names[4]]["error"] or "no config drive" in by_vm[names[4]]["error"]
    assert status == 1
    for i, name in enumerate(names):
        if i != 4:
            assert by_vm[name]["changed"]
            assert read_iso(fetch_file(vcsim_faults, vsphere, iso_paths(vsphere, vms[i])[-1])).password == (
                f"Rotated-{i}-pw"
            )
    assert "Rotated-" not in json.dumps(results)  # results never echo the passwords


def test_batch_all_good_exits_zero_and_is_quiet_without_a_terminal(vcsim_faults, make_vm, tmp_path):
    names = [make_vm().name for _ in range(3)]
    batch = tmp_path / "attach.jsonl"
    batch.write_text("\n".join(json.dumps({"vm": n, "vmdata": vmdata(i)}) for i, n in enumerate(names)))
    cmd = [sys.executable, "-m", "esxi_configdrive.cli", "attach", "--batch", str(batch), "--concurrency", "2"]
    proc = subprocess.run(cmd, env=env_for(vcsim_faults), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["vm"] for r in results) == sorted(names) and all(r["changed"] for r in results)

    # again: nothing to do, and detach in batch
    proc = subprocess.run(cmd, env=env_for(vcsim_faults), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not any(json.loads(line)["changed"] for line in proc.stdout.splitlines())
    detach = tmp_path / "detach.jsonl"
    detach.write_text("\n".join(json.dumps({"vm": n}) for n in names))
    cmd = [sys.executable, "-m", "esxi_configdrive.cli", "detach", "--batch", str(detach)]
    proc = subprocess.run(cmd, env=env_for(vcsim_faults), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and all(json.loads(line)["changed"] for line in proc.stdout.splitlines())


def test_batch_lines_are_checked(tmp_path: Path):
    lines = [
        "not json",
        "[1, 2]",
        '{"vmdata": {}}',
        '{"vm": "a", "password": "x\\ny"}',
        '{"vm": "a", "colour": "blue"}',
        '{"vm": "a"}',
        '{"vm": "a", "password": "fine-Passw0rd"}',
    ]
    items = list(read_batch(lines, "update"))
    errors = [str(i.error) if i.error else None for i in items]
    assert errors[:6] == [
        "line 1: line: not JSON (Expecting value)",
        'line 2: line: must be a JSON object with at least a "vm" key',
        "line 3: vm: required: the VM's name, inventory path, UUID or id",
        errors[3],
        errors[4],
        "line 6: update: nothing to change on this line",
    ]
    assert errors[3].startswith("line 4: password: contains a control character")
    assert errors[4].startswith("line 5: colour: unknown key")
    assert errors[6] is None and items[6].overrides == {"password": "fine-Passw0rd"}
    assert "x\ny" not in " ".join(e for e in errors if e)
    with pytest.raises(ValidationError):
        list(read_batch([], "status"))

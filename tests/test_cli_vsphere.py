"""The vSphere commands' input checks that need no server: they fail before any connection is made."""

from __future__ import annotations

import json

import pytest

from esxi_configdrive.cli import main


@pytest.fixture(autouse=True)
def no_vcenter(monkeypatch):
    """No vCenter configured: a command that tried to connect would fail on the URL instead."""
    for var in ("GOVC_URL", "GOVC_USERNAME", "GOVC_PASSWORD", "VMWARE_HOST"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "flag, value", [("--password-file", "pw"), ("--vmdata", "vm.json"), ("--hostname", "h"), ("--label", "x")]
)
def test_content_flags_are_refused_in_batch_mode(tmp_path, capsys, flag, value):
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"vm": "a", "password": "x-Passw0rd"}\n')
    status = main(["update", "--batch", str(batch), flag, value, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 2
    assert out == {"changed": False, "error": out["error"], "exit_status": 2}
    assert f"{flag} does not apply with --batch" in out["error"]


def test_vm_and_batch_together_or_neither(tmp_path, capsys):
    batch = tmp_path / "b.jsonl"
    batch.write_text("")
    assert main(["detach", "vm-1", "--batch", str(batch)]) == 2
    assert main(["detach"]) == 2
    err = capsys.readouterr().err
    assert "give a VM or --batch, not both" in err and "name the VM, or give --batch FILE" in err


def test_a_failure_reports_changed_in_json(tmp_path, capsys):
    """Bad input changed nothing: changed false. (A missing URL is bad input too.)"""
    (tmp_path / "vm.json").write_text('{"metadata": {"vm-id": "x"}}')
    assert main(["attach", "web-1", "--vmdata", str(tmp_path / "vm.json"), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is False and out["exit_status"] == 2 and out["error"].startswith("url: ")

"""One typed request from the edge to the operation (issue 19): a command's input is parsed and checked once
(``dispatch.parse``), then run through the controller's table. Counted on the real CLI against the harness."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyVmomi.SoapAdapter import SoapStubAdapter
from reliability_fixtures import cli_env, cli_in_process, tool_session
from sample_data import ED25519_KEY
from vsphere_harness import Vcsim

import esxi_configdrive
from esxi_configdrive import VmData
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.iso import tree_to_iso
from esxi_configdrive.vmdata import check_network_choice

VMDATA = {"metadata": {"vm-id": "3f6e1d2c-5b4a-4c3d-9e8f-7a6b5c4d3e2f", "local-hostname": "one-path"}}


def counted(monkeypatch: pytest.MonkeyPatch, function: Callable[..., Any]) -> list[tuple]:
    """Every call of ``function`` through any of the package's modules that imported it (one list of args)."""
    calls: list[tuple] = []
    for info in pkgutil.walk_packages(esxi_configdrive.__path__, "esxi_configdrive."):  # the lazily imported too
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return function(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("esxi_configdrive") and getattr(module, function.__name__, None) is function:
            monkeypatch.setattr(module, function.__name__, wrapper)
    return calls


@pytest.mark.parametrize(
    "change",
    [["--ssh-key-file", "key.pub"], ["--vmdata", "vm.json"], ["--network-data", "empty", "--ssh-key-file", "key.pub"]],
    ids=["a field", "whole content", "a network choice"],
)
def test_one_update_checks_the_network_choice_once_and_builds_the_iso_once(
    vcsim_faults: Vcsim, make_vm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: list[str]
) -> None:
    vm = make_vm()
    with tool_session(vcsim_faults) as session:
        ConfigDriveController(session).attach(vm.name, VmData.from_dict(VMDATA))
    (tmp_path / "key.pub").write_text(ED25519_KEY + "\n")
    (tmp_path / "vm.json").write_text('{"metadata": {"local-hostname": "one-path-2"}}')
    monkeypatch.chdir(tmp_path)
    choices = counted(monkeypatch, check_network_choice)
    isos = counted(monkeypatch, tree_to_iso)

    run = cli_in_process(["update", vm.name, *change, "--json"], cli_env(vcsim_faults))

    assert run.status == 0, run.err
    assert run.json()["changed"] is True
    assert len(choices) == 1, choices
    assert len(isos) == 1


# ---- one sender: the depth of an update at ReconfigVM_Task (issue 19 item 2) ----------------------------------

PACKAGE_DIR = Path(esxi_configdrive.__file__).resolve().parent
MAX_OWN_FRAMES = 10
ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def own_frames(frame: Any) -> list[str]:
    """The tool's own frames on the stack from the CLI's entry point down to ``frame``: ``module.qualname``,
    the module named relative to the package (lambdas and nested functions count)."""
    names: list[str] = []
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if path.is_relative_to(PACKAGE_DIR):
            module = ".".join(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
            names.append(f"{module.removesuffix('.__init__')}.{frame.f_code.co_qualname}")
        frame = frame.f_back
    return names[::-1]


def documented_update_path() -> list[str]:
    """The path written out in docs/architecture.md: the one backticked ``cli.main -> …`` chain."""
    found = re.findall(r"`(cli\.main -> [^`]+)`", ARCHITECTURE.read_text())
    assert len(found) == 1, found
    return [name.strip() for name in found[0].replace("\n", " ").split("->")]


def test_one_update_reaches_reconfigure_vm_through_at_most_ten_frames_of_its_own(
    vcsim_faults: Vcsim, make_vm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm = make_vm()
    with tool_session(vcsim_faults) as session:
        ConfigDriveController(session).attach(vm.name, VmData.from_dict(VMDATA))
    (tmp_path / "key.pub").write_text(ED25519_KEY + "\n")
    monkeypatch.chdir(tmp_path)
    stacks: list[list[str]] = []
    invoke = SoapStubAdapter.InvokeMethod

    def reading_the_stack(stub: Any, mo: Any, info: Any, args: Any, *more: Any) -> Any:
        if info.wsdlName == "ReconfigVM_Task":
            stacks.append(own_frames(sys._getframe(1)))
        return invoke(stub, mo, info, args, *more)

    monkeypatch.setattr(SoapStubAdapter, "InvokeMethod", reading_the_stack)

    run = cli_in_process(["update", vm.name, "--ssh-key-file", "key.pub", "--json"], cli_env(vcsim_faults))

    assert run.status == 0, run.err
    assert run.json()["changed"] is True
    assert len(stacks) == 1, stacks  # one ReconfigVM: the device and the record together
    path = stacks[0]
    assert path == documented_update_path(), " -> ".join(path)
    assert len(path) <= MAX_OWN_FRAMES, " -> ".join(path)
    assert len(set(path)) == len(path) and len({name.rsplit(".", 1)[-1] for name in path}) == len(path), path

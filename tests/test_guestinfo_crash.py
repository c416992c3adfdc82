"""The guestinfo transport under a crash at every step (the harness of tests/test_crash_every_step.py): attach over
guestinfo, and the moves between a config drive and guestinfo (update --transport), interrupted after each of
their vSphere calls (in process, on and off) and the real CLI SIGKILLed after each; then the same command again.

At every point exactly one transport works: an ISO attached, complete and named by the record (whose transport is
the ISO's), and no guestinfo keys of ours; or no ISO attached, the record's transport guestinfo, and the keys on
the VM as the record's digests say. A finished run leaves one transport and no ISO file behind (cloud-init reads
NoCloud and ConfigDrive before VMware: a stale ISO would win)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import reliability_fixtures as rf
from pyVmomi import vim
from reliability_fixtures import Bed
from test_crash_every_step import LIMIT, OLD, controller
from tool_fixtures import folder_listing
from vsphere_harness import get_property

from esxi_configdrive import guestinfo
from esxi_configdrive.drive.keys import digests

pytestmark = pytest.mark.live

DATA = OLD.copy(password=None)  # a password goes over guestinfo only when asked for: tested in test_guestinfo_live
# What a config drive made from the keys holds (guestinfo carries what cloud-init's VMware datasource reads: the
# vm-id, hostname, keys, network, user and vendor data; not CloudStack's other metadata keys)
BACK = guestinfo.read_keys(guestinfo.guestinfo_keys(DATA))
ISO = "iso"
KEYS = "guestinfo"
NONE = "none"  # before attach's one reconfigure: nothing yet (a complete drive or none)


def keys_of(bed: Bed, vm: vim.VirtualMachine) -> dict[str, str]:
    values: dict[str, str] = {}
    for option in get_property(bed.si, vim.VirtualMachine(vm._moId, bed.si._stub), "config.extraConfig") or []:
        if option.key.startswith(guestinfo.PREFIX):
            values[option.key] = option.value  # the last entry of a key wins, as vSphere's rule
    return {k: v for k, v in values.items() if v}


def working_transport(bed: Bed, vm: vim.VirtualMachine, first: tuple) -> str:
    """The one transport that works now (asserting there is exactly one; none before a first attach)."""
    state = bed.state(vm)
    rf.assert_consistent(state, first, [rf.iso_of(DATA), rf.iso_of(BACK)])
    keys = keys_of(bed, vm)
    if state.iso_backed:
        assert state.record.get("transport", "") == "", "an ISO attached under a guestinfo record"
        assert not keys, f"an ISO and guestinfo keys at once: {sorted(keys)}"
        return ISO
    if not state.record and not keys:
        return NONE
    assert state.record.get("transport") == KEYS, f"no ISO and no guestinfo record: {state.record}"
    full = {k: keys.get(k, "") for k in guestinfo.all_keys()}
    assert digests(full, guestinfo.redacted(full)) == state.record.get("keys"), "the keys are not the recorded ones"
    assert guestinfo.read_keys(keys).hostname == DATA.hostname
    return KEYS


def folder_has_no_iso(bed: Bed, vm: vim.VirtualMachine) -> None:
    listing = folder_listing(bed.si, f"[LocalDS_0] ConfigDrive/{vm.name}")
    assert not [n for n in listing or [] if n.endswith(".iso")], f"an ISO left behind: {listing}"


CASES: dict[str, tuple[Callable[..., Any], Callable[..., Any], str]] = {
    # name: (prepare, run, the transport at the end)
    "attach-guestinfo": (lambda c, vm: None, lambda c, vm: c.attach(vm, DATA, transport="guestinfo"), KEYS),
    "move-to-guestinfo": (lambda c, vm: c.attach(vm, DATA), lambda c, vm: c.update(vm, transport="guestinfo"), KEYS),
    "move-to-configdrive": (
        lambda c, vm: c.attach(vm, DATA, transport="guestinfo"),
        lambda c, vm: c.update(vm, transport="configdrive"),
        ISO,
    ),
}


def _start(bed: Bed, name: str, powered_on: bool) -> tuple[vim.VirtualMachine, tuple]:
    vm = bed.make_vm(powered_on=powered_on)
    with rf.tool_session(bed.sim) as s:
        CASES[name][0](controller(s), vm.name)
    return vm, rf.first_cdrom(vm)


def _end(bed: Bed, vm: vim.VirtualMachine, first: tuple, name: str) -> None:
    assert working_transport(bed, vm, first) == CASES[name][2]
    if CASES[name][2] == KEYS:
        folder_has_no_iso(bed, vm)


@pytest.mark.parametrize("powered_on", [False, True], ids=["off", "on"])
@pytest.mark.parametrize("name", list(CASES))
def test_interrupted_after_every_call_then_run_again(bed: Bed, name: str, powered_on: bool, tally) -> None:
    points = 0
    for k in range(1, LIMIT):
        vm, first = _start(bed, name, powered_on)
        with rf.tool_session(bed.sim) as s, rf.CallTap(s, crash_after=k) as tap, contextlib.suppress(rf.Crash):
            CASES[name][1](controller(s), vm.name)
        working_transport(bed, vm, first)  # exactly one, at this point
        if not tap.crashed:
            _end(bed, vm, first, name)
            break
        points += 1
        with rf.tool_session(bed.sim) as s:  # the admin runs the same command again
            CASES[name][1](controller(s), vm.name)
        _end(bed, vm, first, name)
    else:
        pytest.fail(f"{name} did not complete within {LIMIT} calls")
    assert points >= 2, "the operation made suspiciously few vSphere calls"
    tally.add("crash", f"guestinfo {name} ({'on' if powered_on else 'off'})", interruption_points=points)


@pytest.mark.parametrize("name", list(CASES))
def test_cli_killed_after_every_call_then_run_again(bed: Bed, name: str, tmp_path: Path, tally) -> None:
    vmdata = tmp_path / "vm.json"
    vmdata.write_text(json.dumps(DATA.to_dict()))
    env = rf.cli_env(bed.sim)
    points = 0
    for k in range(1, LIMIT):
        vm, first = _start(bed, name, False)
        args = {
            "attach-guestinfo": ["attach", vm.name, "--vmdata", str(vmdata), "--transport", "guestinfo"],
            "move-to-guestinfo": ["update", vm.name, "--transport", "guestinfo"],
            "move-to-configdrive": ["update", vm.name, "--transport", "configdrive"],
        }[name]
        run = rf.run_cli_killed_after(bed.sim, args, env, k, tmp_path)
        working_transport(bed, vm, first)
        if not run.killed:
            assert run.status == 0, run.err
            _end(bed, vm, first, name)
            break
        points += 1
        again = rf.cli_in_process(args, env)
        assert again.status == 0, again.err
        _end(bed, vm, first, name)
    else:
        pytest.fail(f"{name} did not complete within {LIMIT} calls")
    assert points >= 2
    tally.add("crash-sigkill", f"CLI guestinfo {name} (off)", interruption_points=points)

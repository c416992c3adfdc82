"""Batches through a network that loses requests and answers (tests/lossy_proxy.py), on stock vcsim and on the
harness: a change whose answer was lost is never made twice, and after the batch and at most one clean re-run every
VM has exactly one config-drive CD-ROM holding its current data (none after remove), no backing points at a missing
file and no ISO is left that nothing points at.

Stock vcsim matters most here: it neither sets nor checks ``config.changeVersion`` (REFERENCE §9), so a re-sent
ReconfigVM_Task applies a second time there, where vCenter (and the harness's ``change_version`` fault) refuses it.
Each batch counts only if the proxy lost at least one ReconfigVM_Task answer in it (the seeds below do)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lossy_proxy import ANSWER_LOST, LossyProxy
from reliability_fixtures import (
    Bed,
    CliRun,
    assert_attached,
    assert_no_drive,
    cli_env,
    cli_in_process,
    first_cdrom,
    iso_of,
)
from sample_data import numbered_vmdata
from tool_fixtures import settings_for

from esxi_configdrive import VmData
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere_values import DatastorePath

pytestmark = pytest.mark.live

VMS = 40
CONCURRENCY = 8
# rate -> seed: each loses at least one ReconfigVM_Task answer among the first 15 a batch sends (lossy_proxy.decide)
SEEDS = {0.05: 4, 0.30: 4}


def data(i: int, version: int = 1) -> VmData:
    return numbered_vmdata(i, version, uuid_prefix="3c9d1e7a", hostname_prefix="lossy")


@pytest.fixture(params=["stock", "harness"])
def lossy_bed(request: pytest.FixtureRequest) -> tuple[Bed, Callable[..., Any]]:
    if request.param == "stock":
        return Bed(
            request.getfixturevalue("stock_vcsim"), request.getfixturevalue("stock_si")
        ), request.getfixturevalue("stock_make_vm")
    bed = request.getfixturevalue("bed")
    return bed, bed.make_vm


def through(proxy: LossyProxy, sim: Any) -> dict[str, str]:
    """The CLI's environment, addressed to the proxy (plain HTTP on loopback; the proxy speaks TLS onwards)."""
    env = cli_env(sim)
    env.pop("GOVC_TLS_CA_CERTS", None)
    env["GOVC_URL"] = proxy.url
    return env


def run_batch(bed: Bed, tmp: Path, command: str, lines: list[dict], rate: float, report: dict) -> CliRun:
    """One batch through a lossy proxy of its own, then (only if a line failed) one clean re-run."""
    batch = tmp / f"{command}.jsonl"
    batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    args = [command, "--batch", str(batch), "--concurrency", str(CONCURRENCY)]
    with LossyProxy(bed.sim, rate=rate, seed=SEEDS[rate]) as proxy:
        start = time.monotonic()
        run = cli_in_process(args, through(proxy, bed.sim))
        seconds = time.monotonic() - start
        tally = proxy.tally()
        rerun = None
        if run.status != 0:
            with proxy.clean():
                rerun = cli_in_process(args, through(proxy, bed.sim))
    lost_reconfigs = tally.of("ReconfigVM_Task", ANSWER_LOST)
    failed = [r for r in map(json.loads, run.out.splitlines()) if r.get("exit_status")]
    report[command] = {"seconds": round(seconds, 1), "failed": len(failed), "reconfig answers lost": lost_reconfigs}
    report[command]["unanswered"] = tally.lost()
    report[command + " errors"] = sorted({r["error"][:150] for r in failed})
    assert lost_reconfigs >= 1, f"{command}: no ReconfigVM_Task answer was lost; the run does not count"
    assert rerun is None or rerun.status == 0, (rerun.out + rerun.err)[-2000:]
    return run


@pytest.mark.parametrize("rate", sorted(SEEDS))
def test_batches_through_a_lossy_network_make_no_change_twice(lossy_bed, rate: float, tmp_path: Path) -> None:
    bed, make_vm = lossy_bed
    # a quarter of them get their SATA controller from the tool: a re-sent add of one is not refused by stock vcsim
    vms = [make_vm(powered_on=i % 2 == 0, sata_controller=i % 4 != 0) for i in range(VMS)]
    firsts = [first_cdrom(vm) for vm in vms]
    report: dict[str, Any] = {}

    def check_attached(version: int) -> list[str]:
        return every_vm(lambda i, vm, first: assert_attached(
            bed.state(vm), first, iso_of(data(i, version)), bed.si, i % 2 == 0
        ))  # fmt: skip

    def every_vm(check: Callable[[int, Any, tuple], Any]) -> list[Any]:
        """Check every VM, then fail once naming how many VMs are wrong and how."""
        found, wrong = [], {}
        for i, (vm, first) in enumerate(zip(vms, firsts)):
            try:
                found.append(check(i, vm, first))
            except AssertionError as e:
                wrong[vm.name] = str(e).splitlines()[0]
        assert not wrong, f"{len(wrong)} of {VMS} VMs: {sorted(set(wrong.values()))} ({report})"
        return found

    lines = [{"vm": vm.name, "vmdata": data(i).to_dict()} for i, vm in enumerate(vms)]
    run_batch(bed, tmp_path, "attach", lines, rate, report)
    check_attached(1)

    lines = [{"vm": vm.name, "userdata": data(i, 2).userdata.decode()} for i, vm in enumerate(vms)]
    run_batch(bed, tmp_path, "update", lines, rate, report)
    folders = [str(DatastorePath.parse(p).folder) for p in check_attached(2)]

    run_batch(bed, tmp_path, "remove", [{"vm": vm.name} for vm in vms], rate, report)
    every_vm(lambda i, vm, first: assert_no_drive(bed.state(vm), first, bed.si, folders[i], False, removed=True))
    print(f"lossy network {rate:.0%} seed {SEEDS[rate]}: {report}")


# ---- the single-VM commands ---------------------------------------------------------------------------------

ROUNDS = 1


@dataclass
class _ProxyTarget:
    """The proxy as a connection target for the tool (plain HTTP on loopback)."""

    url: str
    username: str
    password: str
    ca_file: None = None


def test_single_vm_commands_through_a_lossy_network_make_no_change_twice(stock_vcsim, stock_si, stock_make_vm) -> None:
    """attach, update, detach in a loop on four VMs (on/off, with and without a SATA controller) at 30 % loss on
    stock vcsim (where a duplicate applies): each command either finishes or, after one clean re-run, leaves the VM
    as it should be."""
    bed, make_vm = Bed(stock_vcsim, stock_si), stock_make_vm
    vms = [make_vm(powered_on=i % 2 == 0, sata_controller=i < 2) for i in range(4)]
    firsts = [first_cdrom(vm) for vm in vms]
    names = [vm.name for vm in vms]
    rate = 0.30
    reruns = 0
    with LossyProxy(bed.sim, rate=rate, seed=SEEDS[rate]) as proxy:
        target = _ProxyTarget(proxy.url, bed.sim.username, bed.sim.password)
        session = Session(settings_for(target)).connect()
        tool = ConfigDriveController(session, task_timeout=20)

        def run(command: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
            nonlocal reruns
            try:
                command(*args, **kwargs)
            except Exception:  # a command that failed (as the CLI would report it): the admin runs it again
                reruns += 1
                with proxy.clean():
                    command(*args, **kwargs)

        try:
            for r in range(ROUNDS):
                for i, (name, vm, first) in enumerate(zip(names, vms, firsts)):
                    run(tool.attach, name, data(i, r))
                    run(tool.update, name, overrides={"userdata": data(i, r + 100).userdata})
                    path = assert_attached(bed.state(vm), first, iso_of(data(i, r + 100)), bed.si, i % 2 == 0)
                    run(tool.detach, name)
                    folder = str(DatastorePath.parse(path).folder)
                    assert_no_drive(bed.state(vm), first, bed.si, folder, keep_empty=i % 2 == 0)
        finally:
            session.close()
        tally = proxy.tally()
    lost = tally.of("ReconfigVM_Task", ANSWER_LOST)
    print(f"single-VM loop at {rate:.0%} seed {SEEDS[rate]}: {lost} ReconfigVM_Task answers lost, {reruns} re-runs")
    assert lost >= 1, "no ReconfigVM_Task answer was lost; the run does not count"

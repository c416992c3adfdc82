"""An overloaded vCenter (or its reverse proxy) answering SOAP calls with HTTP 503: the tool backs off and tries
again, single VM and batch alike; when it never stops, the change's outcome is reported as unknown and a re-run
finishes it. The harness's ``soap_throttle`` fault answers the next N calls with the status."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lossy_proxy import BUSY, FORWARDED, LossyProxy
from reliability_fixtures import Bed, assert_attached, first_cdrom, iso_of, tool_session
from sample_data import ED25519_KEY

from esxi_configdrive import VmData
from esxi_configdrive.batch import read_batch, run_batch
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.errors import OutcomeUnknown

pytestmark = pytest.mark.live


def data(i: int) -> VmData:
    return VmData.from_dict({"metadata": {"vm-id": f"7a2e0c1d-0000-4000-8000-{i:012d}", "local-hostname": f"t-{i}",
                                          "public-keys": [ED25519_KEY]}})  # fmt: skip


def test_a_throttled_attach_backs_off_and_succeeds(bed: Bed) -> None:
    vm = bed.make_vm()
    name = vm.name  # read before: the harness throttles the test's own session too
    with tool_session(bed.sim) as s:
        bed.sim.set_faults(soap_throttle={"count": 3})
        result = ConfigDriveController(s, task_timeout=20).attach(name, data(0))
    assert result.changed and bed.sim.counters()["faults"]["soap_throttled"] == 3
    assert_attached(bed.state(vm), first_cdrom(vm), iso_of(data(0)), bed.si, False)


def test_a_throttled_batch_backs_off_and_every_vm_succeeds(bed: Bed) -> None:
    vms = [bed.make_vm(powered_on=i % 2 == 0) for i in range(6)]
    lines = [f'{{"vm": "{vm.name}", "vmdata": {{"metadata": {{"vm-id": "{data(i).vm_id}"}}}}}}' for i, vm in
             enumerate(vms)]  # fmt: skip
    got: list[dict] = []
    with tool_session(bed.sim) as s:
        bed.sim.set_faults(soap_throttle={"count": 4})  # in a row: one call backs off 4 times, then succeeds
        summary = run_batch(ConfigDriveController(s, task_timeout=20), "attach", read_batch(lines, "attach"),
                            concurrency=3, on_result=got.append)  # fmt: skip
    assert (summary.failed, summary.changed) == (0, 6), got
    assert bed.sim.counters()["faults"]["soap_throttled"] == 4


def test_a_login_while_vcenter_is_busy_waits_for_it(bed: Bed) -> None:
    # the harness never throttles the login family: a proxy in front answers the login's own calls with 503
    with LossyProxy(bed.sim, rate=0, seed=0, busy=2) as proxy:
        target = SimpleNamespace(url=proxy.url, username=bed.sim.username, password=bed.sim.password)
        with tool_session(target) as s:  # type: ignore[arg-type]
            assert s.still_logged_in()
        assert proxy.tally().of("RetrieveServiceContent", BUSY) == 2
        assert proxy.tally().of("Login", FORWARDED) == 1


def test_a_reconfigure_throttled_for_good_is_an_unknown_outcome_that_a_rerun_finishes(bed: Bed) -> None:
    vm = bed.make_vm()
    name = vm.name
    bed.sim.set_faults(soap_throttle={"count": 100, "methods": ["ReconfigVM_Task"]})
    with tool_session(bed.sim) as s, pytest.raises(OutcomeUnknown, match="may still apply"):
        ConfigDriveController(s, task_timeout=20).attach(name, data(1))
    bed.sim.set_faults(soap_throttle={"count": 0})
    with tool_session(bed.sim) as s:
        assert ConfigDriveController(s, task_timeout=20).attach(vm.name, data(1)).changed
    assert_attached(bed.state(vm), first_cdrom(vm), iso_of(data(1)), bed.si, False)  # the first upload is gone

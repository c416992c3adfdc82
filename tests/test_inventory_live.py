"""Reading VMs' facts: one VM a call, or many VMs a page (batch mode and audit read a whole fleet that way)."""

from __future__ import annotations

import pytest
from vsphere_harness import find_vm

from esxi_configdrive.vsphere.inventory import fetch_many_vm_facts, fetch_vm_facts

pytestmark = pytest.mark.live


def test_many_vms_a_page_read_the_same_facts_as_one_by_one(session, vcsim_faults, vsphere, make_vm):
    made = [make_vm(powered_on=i % 2 == 0) for i in range(5)]
    vms = [find_vm(vsphere, vm.name) for vm in made] + [find_vm(vsphere, "DC0_H0_VM0")]
    refs = [type(vm)(vm._moId, session.stub) for vm in vms]
    vcsim_faults.reset_faults()
    many = fetch_many_vm_facts(session, refs, page=4)
    assert vcsim_faults.counters()["soap_by_method"] == {"RetrievePropertiesEx": 2}  # 6 VMs, 4 a page
    for ref in refs:
        one = fetch_vm_facts(session, ref)
        assert many[ref._moId] == one
        assert many[ref._moId].datastores == one.datastores and many[ref._moId].datacenter_path == "DC0"


def test_a_page_with_a_vm_gone_meanwhile_is_left_out(session, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    gone = type(vm)("vm-999999", session.stub)
    assert fetch_many_vm_facts(session, [type(vm)(vm._moId, session.stub), gone]) == {}

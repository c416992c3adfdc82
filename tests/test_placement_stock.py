"""Datastore clusters on stock vcsim (govmomi's simulator with nothing in front): a StoragePod made with
``CreateStoragePod`` and filled with ``MoveIntoFolder_Task``, as an admin's govc or PowerCLI script makes one. Stock
vcsim reports the same free space for every datastore (they share one local filesystem) and never enforces
accessMode; its ``/folder`` does not find a datastore inside a pod (docs/testing.md), so a real upload there is the
harness's to test (tests/test_placement_live.py): here the tool reads the pod and shows its choice."""

from __future__ import annotations

import tempfile
import uuid

import pytest
from vsphere_harness import create_local_datastore, find_datacenter, wait_for_task

from esxi_configdrive import VmData

pytestmark = pytest.mark.live

CLUSTER_HOSTS = ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2")


def test_a_datastore_cluster_made_with_stock_calls_is_read_and_a_member_chosen(stock_tool, stock_si, stock_make_vm):
    names = sorted(f"Member{uuid.uuid4().hex[:6]}" for _ in range(2))
    stores = []
    for name in names:
        directory = tempfile.mkdtemp(prefix=f"vcsim-{name}-")
        for host in CLUSTER_HOSTS:
            stores.append(create_local_datastore(stock_si, host, name, directory))
    pod = f"Pod{uuid.uuid4().hex[:6]}"
    storage_pod = find_datacenter(stock_si).datastoreFolder.CreateStoragePod(name=pod)
    wait_for_task(stock_si, storage_pod.MoveIntoFolder_Task(list({s._moId: s for s in stores}.values())))
    assert sorted(d.name for d in storage_pod.childEntity) == names
    vm = stock_make_vm(host="DC0_C0_H2")
    data = VmData.from_dict({"metadata": {"vm-id": str(uuid.uuid4())}, "userdata": "#cloud-config\n"})

    result = stock_tool.attach(vm.name, data, datastore=pod, dry_run=True)

    # Equal free space on stock vcsim: the name decides, the same member every run.
    assert result.actions[0].startswith(f"datastore cluster {pod}: chose member {names[0]} (")
    assert result.iso is not None and result.iso.startswith(f"[{names[0]}] ConfigDrive/{vm.name}/")

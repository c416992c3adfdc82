"""The user-data limit is the caller's and is applied where data enters, once (issue 10): a raised limit holds
through every step, --network-data auto included. Failed before the redesign with "userdata: … the limit is
1048576", because deriving network data from the NICs re-validated the content against the default limit."""

from __future__ import annotations

import pytest
from tool_fixtures import fetch_file

from esxi_configdrive import VmData, read_iso
from esxi_configdrive.controller import ConfigDriveController

pytestmark = pytest.mark.live

LIMIT = 4 * 1024 * 1024


def test_two_mib_of_user_data_with_network_data_auto_under_a_four_mib_limit(session, vcsim_faults, vsphere, make_vm):
    vm = make_vm()
    data = VmData.from_dict(
        {"metadata": {"vm-id": "2c0d8f5e-8f0e-4b7e-9a55-0c3f0d6a1b2c"}, "userdata": "#" + "x" * (2 * 1024 * 1024)},
        max_userdata_bytes=LIMIT,
    )
    tool = ConfigDriveController(session, task_timeout=20, max_userdata_bytes=LIMIT)
    result = tool.attach(vm.name, data, network_data_auto=True)
    assert result.changed
    drive = read_iso(fetch_file(vcsim_faults, vsphere, result.iso))
    assert drive.userdata == data.userdata
    assert drive.network_data["links"][0]["ethernet_mac_address"]  # the VM's real NIC
    updated = tool.update(vm.name, overrides={"hostname": "big-1"}, network_data_auto=True)
    assert read_iso(fetch_file(vcsim_faults, vsphere, updated.iso)).hostname == "big-1"
    # and the default limit still refuses the same content where it enters
    with pytest.raises(ValueError, match="the limit is 1048576"):
        ConfigDriveController(session, task_timeout=20).update(vm.name, overrides={"userdata": data.userdata})

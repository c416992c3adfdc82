"""Batch lines parsed without vSphere: the network data choices each command takes."""

from __future__ import annotations

import json

from esxi_configdrive.batch import read_batch

VMDATA = {"metadata": {"vm-id": "00000000-0000-4000-8000-000000000001"}}


def test_network_data_choices_per_command():
    lines = [
        json.dumps({"vm": "a", "vmdata": VMDATA, "network_data": "empty"}),
        json.dumps({"vm": "b", "vmdata": VMDATA}),
        json.dumps({"vm": "c", "vmdata": VMDATA, "network_data": "none"}),
    ]
    empty, plain, bad = read_batch(lines, "attach")
    assert empty.error is None and empty.options == {"network_data": "empty"}  # applied when the line runs
    assert plain.error is None and plain.options == {}
    assert str(bad.error) == "line 3: network_data: must be one of file, auto, empty"
    none, auto = read_batch(
        [json.dumps({"vm": "a", "network_data": "none"}), '{"vm": "b", "network_data": "auto"}'], "update"
    )
    assert none.error is None and none.options == {"network_data": "none"}  # a change on its own: no other key needed
    assert auto.error is None and auto.options == {"network_data": "auto"}

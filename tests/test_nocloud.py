"""The NoCloud seed's layout (nocloud.py): its files from VmData and back, reproducible bytes, the password where
cloud-init reads it and readable by root only. Real readers (cloud-init's NoCloud loader, cloudbase-init, blkid,
7-Zip) are in test_readers.py."""

from __future__ import annotations

import json

import pytest
import sample_data as sd

from esxi_configdrive import VmData, build_iso, read_iso
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.iso import iso_to_tree, read_drive
from esxi_configdrive.layout import parts_of
from esxi_configdrive.network import netplan, section_of_netplan
from esxi_configdrive.nocloud import LABEL, SEED_FILES, build_tree, parse_tree
from esxi_configdrive.transport import Transport

MAC = "00:50:56:aa:bb:01"
NETWORK = {
    "interfaces": [{"id": "eth0", "mac": MAC, "addresses": ["192.0.2.10/24"], "gateway4": "192.0.2.1", "mtu": 1500}],
    "dns": ["192.0.2.53"],
    "dns_search": ["example.org"],
}


def seed_data(**changes: object) -> VmData:
    return sd.sample_vmdata(network_data={}, network=NETWORK).copy(**changes)


def test_the_seed_files() -> None:
    data = seed_data()
    tree = build_tree(data)
    assert tree.label == LABEL == "cidata"
    assert tree.all_paths() == ["meta-data", "network-config", "user-data", "vendor-data"]
    meta = json.loads(tree.files["meta-data"])
    assert meta["instance-id"] == data.vm_id and meta["local-hostname"] == data.hostname
    assert meta["public-keys"] == data.public_keys
    assert meta["metadata"]["instance-id"] == sd.METADATA["instance-id"]  # CloudStack's, not cloud-init's
    assert tree.files["user-data"] == data.userdata
    assert json.loads(tree.files["network-config"]) == netplan(NETWORK)
    (config, hook) = parts_of(tree.files["vendor-data"].decode())
    assert config[0] == "text/cloud-config" and json.dumps(sd.PASSWORD, ensure_ascii=False) in config[1]
    assert hook[0] == "text/cloud-boothook"
    assert tree.private == {"vendor-data"}  # the password: root only where Rock Ridge modes apply


def test_no_network_section_no_network_config_so_the_guest_uses_dhcp() -> None:
    tree = build_tree(sd.minimal_vmdata())
    assert tree.all_paths() == ["meta-data", "user-data"] and tree.files["user-data"] == b""  # cloud-init needs it


def test_foreign_nova_network_data_has_no_seed_form() -> None:
    with pytest.raises(ValidationError, match="network section only"):
        build_tree(sd.sample_vmdata())


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(seed_data(), id="full"),
        pytest.param(sd.minimal_vmdata(), id="minimal"),
        pytest.param(
            seed_data(password=None, vendor_data={"cloud-init": "#cloud-config\nruncmd: [true]\n"}), id="vendor"
        ),
        pytest.param(seed_data(userdata=b"\x00\xff binary"), id="binary-userdata"),
    ],
)
def test_a_seed_reads_back_into_the_same_vm_data(data: VmData) -> None:
    iso = build_iso(data, transport=Transport.NOCLOUD)
    assert build_iso(data, transport=Transport.NOCLOUD) == iso  # reproducible bytes
    transport, back = read_drive(iso)
    assert transport is Transport.NOCLOUD
    for name in ("metadata", "public_keys", "userdata", "password", "vendor_data", "network"):
        assert getattr(back, name) == getattr(data, name), name
    assert build_iso(back, transport=Transport.NOCLOUD) == iso  # read back and built again: the same seed


def test_the_config_drive_is_still_read_as_one() -> None:
    data = sd.sample_vmdata()
    transport, back = read_drive(build_iso(data))
    assert transport is Transport.CONFIGDRIVE and back.network_data == data.network_data
    assert read_iso(build_iso(seed_data(), transport=Transport.NOCLOUD)).hostname == data.hostname


def test_a_foreign_seed_keeps_what_this_layout_does_not_write() -> None:
    tree = build_tree(sd.minimal_vmdata())
    v1 = b"version: 1\nconfig:\n- type: physical\n  name: eth0\n"
    tree.files["network-config"] = v1
    tree.files["scripts/x.sh"] = b"#!/bin/sh\n"
    back = parse_tree(tree)
    assert back.network is None and back.extra_files == {"network-config": v1, "scripts/x.sh": b"#!/bin/sh\n"}
    again = build_tree(back)
    assert again.files["network-config"] == v1 and again.files["scripts/x.sh"] == b"#!/bin/sh\n"


def test_yaml_meta_data_as_people_write_it() -> None:
    tree = build_tree(sd.minimal_vmdata())
    tree.files["meta-data"] = b"instance-id: iid-local01\nlocal-hostname: cloudimg\npublic-keys: " + (
        sd.ED25519_KEY.encode() + b"\n"
    )
    back = parse_tree(tree)
    assert back.vm_id == "iid-local01" and back.hostname == "cloudimg" and back.public_keys == [sd.ED25519_KEY]


def test_a_seed_without_meta_data_is_no_seed() -> None:
    tree = build_tree(sd.minimal_vmdata())
    del tree.files["meta-data"]
    with pytest.raises(ValidationError, match="meta-data: missing"):
        parse_tree(tree)
    assert iso_to_tree(build_iso(sd.minimal_vmdata(), transport=Transport.NOCLOUD)).label == "cidata"


def test_netplan_reads_back_into_the_section() -> None:
    assert section_of_netplan(netplan(NETWORK)) == NETWORK
    assert section_of_netplan({"version": 1, "config": []}) is None
    assert section_of_netplan({"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}) is None  # no MAC
    assert [f.path for f in SEED_FILES] == ["meta-data", "user-data", "vendor-data", "network-config"]


def test_a_config_drives_network_data_moves_to_the_seed_as_its_section() -> None:
    """What update reads back from a config drive is nova's form; moved to a seed it becomes version 2 again."""
    from esxi_configdrive.network import network_data, section_of_network_data

    section = dict(
        NETWORK, interfaces=[*NETWORK["interfaces"], {"id": "eth1", "mac": "00:50:56:aa:bb:02", "dhcp4": True}]
    )
    back = read_iso(build_iso(sd.minimal_vmdata(network=section)))
    assert back.network is None and section_of_network_data(back.network_data) == section
    seed = read_iso(build_iso(back, transport=Transport.NOCLOUD))
    assert seed.network == section and build_iso(seed) == build_iso(sd.minimal_vmdata(network=section))
    assert section_of_network_data(network_data(NETWORK) | {"extra": 1}) is None
    with pytest.raises(ValidationError, match="network section only"):
        build_tree(sd.minimal_vmdata(network_data={"links": [{"id": "x"}]}))

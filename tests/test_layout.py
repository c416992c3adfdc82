"""Layout: VmData -> the drive's file tree (REFERENCE §1) and back, without an ISO."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess

import pytest
import sample_data as sd
import yaml

from esxi_configdrive import read_iso
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.layout import (
    CHECKSUM_ALIAS,
    CHECKSUM_PATH,
    DATED_VERSIONS,
    FileTree,
    build_tree,
    parse_tree,
    password_md5_checksum,
)
from esxi_configdrive.vmdata import VmData

LATEST = "openstack/latest"


def json_file(tree: FileTree, path: str):
    raw = tree.read(path)
    assert raw is not None, f"{path} missing"
    return json.loads(raw)


# ---- the CloudStack tree ----------------------------------------------------------------------------------


def test_full_drive_has_exactly_the_reference_files():
    tree = build_tree(sd.sample_vmdata())
    expected = {f"cloudstack/metadata/{key}.txt" for key in sd.METADATA} | {
        "cloudstack/metadata/public-keys.txt",
        "cloudstack/userdata/user_data.txt",
        "cloudstack/password/vm_password.txt",
        "cloudstack/password/vm-password-md5checksum.txt",
        "cloudstack/password/vm_password_md5checksum.txt",
        f"{LATEST}/meta_data.json",
        f"{LATEST}/user_data",
        f"{LATEST}/vendor_data.json",
        f"{LATEST}/network_data.json",
    }
    assert set(tree.all_paths()) == expected
    assert tree.label == "config-2"


def test_metadata_files_hold_the_values():
    tree = build_tree(sd.sample_vmdata())
    for key, value in sd.METADATA.items():
        assert tree.read(f"cloudstack/metadata/{key}.txt") == value.encode()
    assert tree.read("cloudstack/metadata/public-keys.txt") == f"{sd.ED25519_KEY}\n{sd.RSA_KEY}\n".encode()
    assert tree.read("cloudstack/metadata/vm-id.txt") == sd.VM_ID.encode()
    unicode = build_tree(sd.minimal_vmdata(metadata={"vm-id": "x", "cloud-name": "Zürich ☁"}))
    assert unicode.read("cloudstack/metadata/cloud-name.txt") == "Zürich ☁".encode()


def test_userdata_raw_bytes_and_openstack_hard_link():
    raw = bytes(range(256)) * 3
    tree = build_tree(sd.sample_vmdata(userdata=raw))
    assert tree.files["cloudstack/userdata/user_data.txt"] == raw
    assert tree.links[f"{LATEST}/user_data"] == "cloudstack/userdata/user_data.txt"
    assert f"{LATEST}/user_data" not in tree.files  # a link, not a second copy
    assert tree.read(f"{LATEST}/user_data") == raw


def test_no_userdata_no_password_no_files_for_them():
    tree = build_tree(sd.minimal_vmdata())
    paths = tree.all_paths()
    assert not any("userdata" in p or "user_data" in p or "password" in p for p in paths)
    assert set(paths) == {
        "cloudstack/metadata/vm-id.txt",
        f"{LATEST}/meta_data.json",
        f"{LATEST}/vendor_data.json",
    }
    assert json_file(tree, f"{LATEST}/meta_data.json") == {"uuid": sd.VM_ID}
    assert json_file(tree, f"{LATEST}/vendor_data.json") == {}


def test_no_network_data_no_file_so_the_guest_falls_back_to_dhcp():
    """cloud-init turns a present `{}` into an empty network config and leaves the NIC down; without the file it
    falls back to DHCP on the first NIC (REFERENCE.md section 5). So no network data means no file."""
    for data in (sd.minimal_vmdata(), sd.minimal_vmdata(network_data={})):
        tree = build_tree(data)
        assert f"{LATEST}/network_data.json" not in tree.all_paths()
        assert parse_tree(tree).empty_network_data is False
    dated = sd.minimal_vmdata()
    dated.dated_versions = True
    assert not any(p.endswith("network_data.json") for p in build_tree(dated).all_paths())


def test_cloudstacks_empty_network_data_only_on_request_and_kept_on_reading():
    data = sd.minimal_vmdata()
    data.empty_network_data = True
    tree = build_tree(data)
    assert tree.read(f"{LATEST}/network_data.json") == b"{}"
    again = parse_tree(tree)
    assert again.empty_network_data is True and again.network_data == {}
    assert build_tree(again).all_paths() == tree.all_paths()  # an update keeps the drive's layout
    assert again.extra_files == {}
    # real network data wins over the flag: the file holds it
    data.network_data = dict(sd.NETWORK_DATA)
    assert json_file(build_tree(data), f"{LATEST}/network_data.json") == sd.NETWORK_DATA


def test_password_files_and_md5_checksum_under_both_names():
    tree = build_tree(sd.sample_vmdata())
    assert tree.read("cloudstack/password/vm_password.txt") == sd.PASSWORD.encode("utf-8")
    expected = hashlib.md5(sd.PASSWORD.encode()).hexdigest().lstrip("0")
    assert tree.files[CHECKSUM_PATH] == expected.encode()
    assert tree.links[CHECKSUM_ALIAS] == CHECKSUM_PATH
    assert CHECKSUM_PATH.endswith("vm-password-md5checksum.txt")
    assert CHECKSUM_ALIAS.endswith("vm_password_md5checksum.txt")


def test_md5_checksum_has_no_zero_padding_like_java_biginteger():
    password = sd.password_with_leading_zero_md5()
    full = hashlib.md5(password.encode()).hexdigest()
    assert full.startswith("0") and len(full) == 32
    checksum = password_md5_checksum(password)
    assert checksum == full.lstrip("0")
    assert len(checksum) < 32
    assert int(checksum, 16) == int(full, 16)  # BigInteger(1, md5).toString(16)
    tree = build_tree(sd.minimal_vmdata(password=password))
    assert tree.read(CHECKSUM_PATH) == checksum.encode()
    assert tree.read(CHECKSUM_ALIAS) == checksum.encode()


# ---- openstack/latest -------------------------------------------------------------------------------------


def test_meta_data_json_mapping():
    data = sd.sample_vmdata(public_keys=[sd.ED25519_KEY, sd.RSA_KEY, sd.ECDSA_KEY])
    meta = json_file(build_tree(data), f"{LATEST}/meta_data.json")
    assert meta == {
        "uuid": sd.VM_ID,
        "hostname": sd.HOSTNAME,
        "name": "web-1.example.org",
        "availability_zone": "zone-a",
        "public_keys": {"alice@example": sd.ED25519_KEY, "bob@example": sd.RSA_KEY, "key": sd.ECDSA_KEY},
        "keys": [
            {"type": "ssh", "name": "alice@example", "data": sd.ED25519_KEY},
            {"type": "ssh", "name": "bob@example", "data": sd.RSA_KEY},
            {"type": "ssh", "name": "key", "data": sd.ECDSA_KEY},
        ],
        "admin_pass": sd.PASSWORD,
    }


def test_meta_data_json_without_password_has_no_admin_pass_and_keeps_extra_keys():
    data = sd.sample_vmdata(password=None, openstack_metadata={"meta": {"role": "db"}, "launch_index": 0})
    meta = json_file(build_tree(data), f"{LATEST}/meta_data.json")
    assert "admin_pass" not in meta
    assert meta["meta"] == {"role": "db"} and meta["launch_index"] == 0


def test_repeated_key_comments_keep_every_key():
    other = sd.fake_key("ssh-ed25519", comment="alice@example")
    meta = json_file(build_tree(sd.minimal_vmdata(public_keys=[sd.ED25519_KEY, other])), f"{LATEST}/meta_data.json")
    assert meta["public_keys"] == {"alice@example": sd.ED25519_KEY, "alice@example-2": other}
    assert [k["data"] for k in meta["keys"]] == [sd.ED25519_KEY, other]


def test_vendor_data_forms():
    no_password = json_file(build_tree(sd.sample_vmdata(password=None)), f"{LATEST}/vendor_data.json")
    assert no_password == {}

    vendor = json_file(build_tree(sd.sample_vmdata()), f"{LATEST}/vendor_data.json")
    assert set(vendor) == {"cloud-init"}
    (config_type, cloud_config), (hook_type, boothook) = sd.vendor_parts(vendor["cloud-init"])
    assert (config_type, hook_type) == ("text/cloud-config", "text/cloud-boothook")
    assert cloud_config.startswith("#cloud-config\n")
    assert yaml.safe_load(cloud_config) == {"password": sd.PASSWORD, "chpasswd": {"expire": False}}
    # the boothook carries a digest that changes with the password, never the password itself
    assert boothook.startswith("#cloud-boothook\n") and sd.PASSWORD not in boothook
    other = json_file(build_tree(sd.sample_vmdata(password="another-pw")), f"{LATEST}/vendor_data.json")
    assert sd.vendor_parts(other["cloud-init"])[1][1] != boothook
    again = json_file(build_tree(sd.sample_vmdata()), f"{LATEST}/vendor_data.json")
    assert again["cloud-init"] == vendor["cloud-init"]  # deterministic: the same drive gives the same bytes

    off = sd.sample_vmdata(password_vendor_data=False)
    assert json_file(build_tree(off), f"{LATEST}/vendor_data.json") == {}
    assert build_tree(off).read("cloudstack/password/vm_password.txt") == sd.PASSWORD.encode()

    mine = sd.sample_vmdata(vendor_data={"static": {"a": 1}})
    merged = json_file(build_tree(mine), f"{LATEST}/vendor_data.json")
    assert merged["static"] == {"a": 1} and "cloud-init" in merged


@pytest.mark.parametrize(
    "password", ["yes", "null", "0123", "- a", "a: b", '"', "'", "\\", "#x", " pad ", "[1]", "é😀"]
)
def test_password_cloud_config_survives_yaml(password):
    vendor = json_file(build_tree(sd.minimal_vmdata(password=password)), f"{LATEST}/vendor_data.json")
    assert yaml.safe_load(sd.vendor_parts(vendor["cloud-init"])[0][1])["password"] == password


def test_network_data_passthrough():
    tree = build_tree(sd.sample_vmdata())
    assert json_file(tree, f"{LATEST}/network_data.json") == sd.NETWORK_DATA


def test_dated_versions():
    assert not any(p.startswith("openstack/2") for p in build_tree(sd.sample_vmdata()).all_paths())
    tree = build_tree(sd.sample_vmdata(dated_versions=True))
    for version in DATED_VERSIONS:
        folder = f"openstack/{version}"
        assert tree.links[f"{folder}/meta_data.json"] == f"{LATEST}/meta_data.json"
        assert tree.links[f"{folder}/user_data"] == "cloudstack/userdata/user_data.txt"
        assert (f"{folder}/vendor_data.json" in tree.links) == (version >= "2013-10-17")
        assert (f"{folder}/network_data.json" in tree.links) == (version >= "2015-10-15")
    assert "2012-08-10" in DATED_VERSIONS and "2018-08-27" in DATED_VERSIONS
    assert parse_tree(tree).dated_versions


def test_labels_carry_through():
    assert build_tree(sd.minimal_vmdata(label="CONFIG-2")).label == "CONFIG-2"


# ---- tree -> VmData ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        sd.sample_vmdata(),
        sd.minimal_vmdata(),
        sd.sample_vmdata(dated_versions=True, label="CONFIG-2"),
        sd.sample_vmdata(password_vendor_data=False, vendor_data={"cloud-init": "#cloud-config\n"}),
        sd.sample_vmdata(userdata=b"\x00\xff binary", openstack_metadata={"meta": {"k": "v"}}),
    ],
    ids=["sample", "minimal", "dated", "no-password-vendor-data", "binary"],
)
def test_parse_tree_inverts_build_tree(data):
    assert parse_tree(build_tree(data)) == data


def test_cloudstack_4_20_vendor_data_recognised_as_the_password_part():
    tree = build_tree(sd.minimal_vmdata(password="pw"))
    tree.files[f"{LATEST}/vendor_data.json"] = json.dumps(
        {"cloud-init": "#cloud-config\npassword: pw\nchpasswd:\n  expire: False"}
    ).encode()
    data = parse_tree(tree)
    assert data.password == "pw" and data.password_vendor_data and data.vendor_data == {}


def test_password_from_admin_pass_when_no_cloudstack_file():
    tree = build_tree(sd.minimal_vmdata(password="pw", password_vendor_data=False))
    for path in list(tree.files):
        if path.startswith("cloudstack/password/"):
            del tree.files[path]
    tree.links.clear()
    assert parse_tree(tree).password == "pw"


@pytest.mark.parametrize(
    "files, field",
    [
        ({}, "iso:openstack/latest/meta_data.json"),
        ({f"{LATEST}/meta_data.json": b"{not json"}, "iso:openstack/latest/meta_data.json"),
        ({f"{LATEST}/meta_data.json": b"[1]"}, "iso:openstack/latest/meta_data.json"),
        ({f"{LATEST}/meta_data.json": b"\xff"}, "iso:openstack/latest/meta_data.json"),
        ({f"{LATEST}/meta_data.json": b"{}"}, "metadata.vm-id"),
        ({f"{LATEST}/meta_data.json": b'{"uuid":"x"}', f"{LATEST}/vendor_data.json": b"{"}, None),
        ({f"{LATEST}/meta_data.json": b'{"uuid":"x"}', f"{LATEST}/network_data.json": b"1"}, None),
        ({f"{LATEST}/meta_data.json": b'{"uuid":"x"}', "cloudstack/metadata/local-hostname.txt": b"a_b"}, None),
        ({f"{LATEST}/meta_data.json": b'{"uuid":"x"}', "cloudstack/password/vm_password.txt": b"a\nb"}, "password"),
    ],
)
def test_parse_tree_rejects_broken_drives(files, field):
    with pytest.raises(ValidationError) as info:
        parse_tree(FileTree(files=files))
    if field:
        assert info.value.field == field


def test_digest_tracks_content_and_label():
    a, b = build_tree(sd.sample_vmdata()), build_tree(sd.sample_vmdata())
    assert a.digest() == b.digest()
    assert build_tree(sd.sample_vmdata(password="other")).digest() != a.digest()
    assert build_tree(sd.sample_vmdata(label="CONFIG-2")).digest() != a.digest()


# ---- a drive nova wrote (openstack/ only) -----------------------------------------------------------------

NOVA_META = {
    "uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38",
    "hostname": "test.novalocal",
    "name": "test",
    "availability_zone": "nova",
    "launch_index": 0,
    "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f",
    "random_seed": base64.b64encode(b"\x01" * 512).decode(),
    "meta": {"role": "webserver", "essential": "false"},
    "devices": [],
    "public_keys": {"mykey": sd.RSA_KEY + "\n"},
    "keys": [{"name": "mykey", "type": "ssh", "data": sd.RSA_KEY + "\n"}],
    "admin_pass": "nova-pass",
}


def nova_files() -> dict[str, bytes]:
    meta = json.dumps(NOVA_META).encode()
    older = json.dumps({k: NOVA_META[k] for k in ("uuid", "hostname", "name", "public_keys")}).encode()
    return {
        "openstack/2012-08-10/meta_data.json": older,
        "openstack/2012-08-10/user_data": b"#!/bin/sh\necho nova\n",
        "openstack/latest/meta_data.json": meta,
        "openstack/latest/user_data": b"#!/bin/sh\necho nova\n",
        "openstack/latest/vendor_data.json": b"{}",
        "openstack/latest/vendor_data2.json": b'{"static": {}}',
        "openstack/latest/network_data.json": json.dumps(sd.NETWORK_DATA).encode(),
        "openstack/content/0000": b"injected file\n",
        "ec2/latest/meta-data.json": b'{"instance-id": "i-00000001"}',
    }


def check_nova_data(data: VmData) -> None:
    assert data.metadata == {
        "vm-id": NOVA_META["uuid"],
        "local-hostname": "test.novalocal",
        "public-hostname": "test",
        "availability-zone": "nova",
    }
    assert data.public_keys == [sd.RSA_KEY]
    assert data.userdata == b"#!/bin/sh\necho nova\n"
    assert data.password == "nova-pass"
    assert not data.password_vendor_data  # nova offered no cloud-config password: don't start now
    assert data.network_data == sd.NETWORK_DATA
    assert data.dated_versions
    assert data.openstack_metadata == {
        k: NOVA_META[k] for k in ("launch_index", "project_id", "random_seed", "meta", "devices")
    }


def check_keeps_every_file(original: dict[str, bytes], data: VmData) -> None:
    rebuilt = build_tree(data)
    missing = set(original) - set(rebuilt.all_paths())
    assert not missing, f"build(read(x)) lost {sorted(missing)}"
    for path in ("openstack/content/0000", "ec2/latest/meta-data.json", "openstack/latest/vendor_data2.json"):
        assert rebuilt.read(path) == original[path]
    assert rebuilt.read("openstack/latest/user_data") == original["openstack/latest/user_data"]
    meta = json.loads(rebuilt.read("openstack/latest/meta_data.json") or b"")
    assert meta["uuid"] == NOVA_META["uuid"] and meta["meta"] == NOVA_META["meta"]
    assert meta["random_seed"] == NOVA_META["random_seed"] and meta["admin_pass"] == "nova-pass"
    assert json.loads(rebuilt.read("openstack/latest/vendor_data.json") or b"") == {}
    assert parse_tree(rebuilt) == data


def test_nova_drive_read_and_rebuilt_in_memory():
    files = nova_files()
    data = parse_tree(FileTree(files=dict(files)))
    check_nova_data(data)
    check_keeps_every_file(files, data)


@pytest.mark.readers
def test_nova_drive_made_by_genisoimage(tmp_path):
    genisoimage = sd.need_tool("genisoimage")
    root = tmp_path / "drive"
    files = nova_files()
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    iso = tmp_path / "nova.iso"
    # nova's own command line (nova/virt/configdrive.py)
    sd.run(
        [
            genisoimage,
            "-o",
            str(iso),
            "-ldots",
            "-allow-lowercase",
            "-allow-multidot",
            "-l",
            "-publisher",
            "OpenStack Compute",
            "-quiet",
            "-J",
            "-r",
            "-V",
            "config-2",
            str(root),
        ]
    )
    data = read_iso(iso)
    assert data.label == "config-2"
    check_nova_data(data)
    check_keeps_every_file(files, data)


def test_genisoimage_missing_is_reported(monkeypatch):
    # The reader helpers fail (not skip) when CI requires the readers.
    monkeypatch.setattr(sd, "REQUIRE_READERS", True)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception):
        sd.need_tool("surely-not-a-real-tool")
    monkeypatch.setattr(sd, "REQUIRE_READERS", False)
    with pytest.raises(pytest.skip.Exception):
        sd.need_tool("surely-not-a-real-tool")


def test_run_helper_reports_failures():
    with pytest.raises(AssertionError, match="exited 3"):
        sd.run(["sh", "-c", "exit 3"])
    assert isinstance(sd.run(["true"]), subprocess.CompletedProcess)

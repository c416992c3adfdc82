"""What readers other than cloud-init need from a drive (../shared/REFERENCE.md §6): glean's host name from
meta_data.json `name`, and CloudStack's scripts' `saved_password`, which they read as "no change"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sample_data as sd

from esxi_configdrive import VmData, build_iso, read_iso
from esxi_configdrive.batch import read_batch
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.fields import check_password
from esxi_configdrive.iso import tree_to_iso
from esxi_configdrive.layout import FileTree, build_tree


def meta_data(data: VmData) -> dict:
    return json.loads(build_tree(data).read("openstack/latest/meta_data.json"))


# ---- glean: the host name as `name` ---------------------------------------------------------------------------


def test_name_is_the_host_name_when_no_public_hostname_is_given():
    # glean (cmd.py set_hostname_from_config_drive) sets the host name from meta_data.json `name` only
    data = VmData.from_dict({"metadata": {"vm-id": "x", "local-hostname": "db-1"}})
    assert meta_data(data)["name"] == "db-1" and meta_data(data)["hostname"] == "db-1"


def test_a_public_hostname_stays_the_name():
    data = VmData.from_dict({"metadata": {"vm-id": "x", "local-hostname": "db-1", "public-hostname": "db.example"}})
    assert meta_data(data)["name"] == "db.example"


def test_no_host_name_no_name():
    assert "name" not in meta_data(VmData.from_dict({"metadata": {"vm-id": "x"}}))


def test_reading_back_does_not_turn_the_repeated_name_into_a_public_hostname():
    data = VmData.from_dict({"metadata": {"vm-id": "x", "local-hostname": "db-1"}})
    back = read_iso(build_iso(data))
    assert back == data and "public-hostname" not in back.metadata
    assert build_iso(back) == build_iso(data)  # an update of such a drive rewrites the same bytes


def test_a_nova_drive_with_only_meta_data_json_reads_its_name():
    meta = {"uuid": "x", "hostname": "web-1", "name": "web-1.example.org"}
    tree = FileTree(files={"openstack/latest/meta_data.json": json.dumps(meta).encode()})
    back = read_iso(tree_to_iso(tree))
    assert back.metadata == {"vm-id": "x", "local-hostname": "web-1", "public-hostname": "web-1.example.org"}


# ---- CloudStack's scripts: saved_password ----------------------------------------------------------------------


@pytest.mark.parametrize("password", ["saved_password", " saved_password ", "saved_password  "])
def test_saved_password_is_refused_saying_why(password):
    with pytest.raises(ValidationError) as info:
        check_password(password)
    assert info.value.field == "password" and "keep the old password" in info.value.message


@pytest.mark.parametrize("password", ["saved_password1", "Saved_Password", "saved password"])
def test_passwords_that_merely_look_alike_are_fine(password):
    check_password(password)


def test_saved_password_in_a_file_a_batch_line_and_on_build(tmp_path):
    with pytest.raises(ValidationError) as info:
        VmData.from_dict({"metadata": {"vm-id": "x"}, "password": "saved_password"})
    assert info.value.field == "password"
    (item,) = read_batch([json.dumps({"vm": "a", "password": "saved_password"})], "update")
    assert item.error is not None and item.error.field == "line 1: password"
    vm = tmp_path / "vm.json"
    vm.write_text(json.dumps({"metadata": {"vm-id": "x"}}))
    (tmp_path / "pw").write_text("saved_password\n")
    proc = subprocess.run(
        [sys.executable, "-m", "esxi_configdrive.cli", "build", "--vmdata", str(vm), "--password-file",
         str(tmp_path / "pw"), "-o", str(tmp_path / "out.iso")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("esxi-configdrive: error: password-file: saved_password is the word")
    assert not (tmp_path / "out.iso").exists()


def test_the_sample_password_is_still_fine():
    check_password(sd.PASSWORD)

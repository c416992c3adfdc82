"""ISO 9660 writing and reading, checked with an independent parser (sample_data.iso_listing), not the tool's."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sample_data as sd

from esxi_configdrive import ValidationError, build_iso, read_iso
from esxi_configdrive.iso import MAX_ISO_BYTES, IsoTooLarge, iso_to_tree, tree_to_iso
from esxi_configdrive.layout import FileTree, build_tree

USER_DATA_NAMES = ("cloudstack/userdata/user_data.txt", "openstack/latest/user_data")
CHECKSUM_NAMES = ("cloudstack/password/vm-password-md5checksum.txt", "cloudstack/password/vm_password_md5checksum.txt")


@pytest.fixture(scope="module")
def sample_iso() -> bytes:
    return build_iso(sd.sample_vmdata())


def test_round_trip(sample_iso):
    assert read_iso(sample_iso) == sd.sample_vmdata()
    for data in (sd.minimal_vmdata(), sd.sample_vmdata(dated_versions=True, userdata=bytes(range(256)))):
        assert read_iso(build_iso(data)) == data


def test_sources_bytes_path_file(tmp_path, sample_iso):
    path = tmp_path / "drive.iso"
    path.write_bytes(sample_iso)
    expected = sd.sample_vmdata()
    assert read_iso(str(path)) == expected
    assert read_iso(path) == expected
    assert read_iso(bytearray(sample_iso)) == expected
    assert read_iso(memoryview(sample_iso)) == expected
    with path.open("rb") as f:
        assert read_iso(f) == expected
    assert read_iso(io.BytesIO(sample_iso)) == expected


def test_missing_path_is_a_validation_error(tmp_path):
    with pytest.raises(ValidationError) as info:
        read_iso(tmp_path / "missing.iso")
    assert info.value.field == "iso"


def test_rock_ridge_and_joliet_names_are_exact(sample_iso):
    expected = set(build_tree(sd.sample_vmdata()).all_paths())
    assert set(sd.iso_listing(sample_iso, "rockridge")) == expected
    assert set(sd.iso_listing(sample_iso, "joliet")) == expected
    assert "openstack/latest/user_data" in expected and "cloudstack/password/vm_password.txt" in expected


def test_plain_iso9660_names_are_level_3_d_characters(sample_iso):
    names = sd.iso_listing(sample_iso, "iso9660")
    assert len(names) == len(build_tree(sd.sample_vmdata()).all_paths())
    for path in names:
        *dirs, leaf = path.split("/")
        assert re.fullmatch(r"[A-Z0-9_]+(\.[A-Z0-9_]*)?;1", leaf), path
        assert len(leaf) - 2 <= 30, path
        assert all(re.fullmatch(r"[A-Z0-9_]{1,31}", d) for d in dirs), path
    assert "OPENSTACK/LATEST/USER_DATA;1" in names


@pytest.mark.parametrize("tree", ["rockridge", "iso9660", "joliet"])
def test_user_data_and_checksum_are_real_hard_links(sample_iso, tree):
    listing = sd.iso_listing(sample_iso, tree)
    if tree == "iso9660":
        by_rr = sd.iso_listing(sample_iso, "rockridge")
        # same directory records in the same order: map plain names to Rock Ridge names by position
        listing = dict(zip(by_rr, listing.values()))
    user_data = {listing[name] for name in USER_DATA_NAMES}
    checksum = {listing[name] for name in CHECKSUM_NAMES}
    assert len(user_data) == 1, f"user_data names point at different extents: {user_data}"
    assert len(checksum) == 1, f"checksum names point at different extents: {checksum}"
    assert sd.file_bytes(sample_iso, user_data.pop()) == sd.USERDATA
    assert sd.file_bytes(sample_iso, checksum.pop()) == build_tree(sd.sample_vmdata()).read(CHECKSUM_NAMES[0])
    # and different files really are different extents (so equality above means something)
    extents = [loc[0] for name, loc in listing.items() if name not in USER_DATA_NAMES[1:] + CHECKSUM_NAMES[1:]]
    assert len(extents) == len(set(extents))


def test_hard_links_are_not_copies(sample_iso):
    big = sd.sample_vmdata(userdata=b"x" * 500_000)
    iso = build_iso(big)
    assert len(iso) < 500_000 * 1.5  # one copy of the user data, not two
    listing = sd.iso_listing(iso, "rockridge")
    assert listing[USER_DATA_NAMES[0]] == listing[USER_DATA_NAMES[1]]


def test_dated_versions_share_extents():
    iso = build_iso(sd.sample_vmdata(dated_versions=True))
    listing = sd.iso_listing(iso, "rockridge")
    for version in ("2012-08-10", "2018-08-27"):
        assert listing[f"openstack/{version}/meta_data.json"] == listing["openstack/latest/meta_data.json"]
        assert listing[f"openstack/{version}/user_data"] == listing[USER_DATA_NAMES[0]]


def test_file_contents_in_the_image(sample_iso):
    tree = build_tree(sd.sample_vmdata())
    listing = sd.iso_listing(sample_iso, "rockridge")
    for path in tree.all_paths():
        assert sd.file_bytes(sample_iso, listing[path]) == tree.read(path), path


@pytest.mark.parametrize("label", ["config-2", "CONFIG-2", "cidata", "x" * 16])
def test_label_in_both_volume_descriptors(label):
    iso = build_iso(sd.minimal_vmdata(), label=label)
    assert sd.volume_label(iso, "primary") == label
    assert sd.volume_label(iso, "joliet") == label
    assert read_iso(iso).label == label
    assert sd.volume_label(build_iso(sd.minimal_vmdata(label=label))) == label


def test_default_label_is_config_2(sample_iso):
    assert sd.volume_label(sample_iso) == "config-2"


@pytest.mark.parametrize("label", ["x" * 17, "trail ", ""])
def test_bad_label_rejected(label):
    with pytest.raises(ValidationError) as info:
        build_iso(sd.minimal_vmdata(), label=label)
    assert info.value.field == "label"


def test_large_userdata_allowed_when_the_limit_is_raised():
    data = sd.minimal_vmdata(userdata=b"u" * (1536 * 1024))
    with pytest.raises(ValidationError):
        build_iso(data)
    iso = build_iso(data, max_userdata_bytes=2 * 1024 * 1024)
    assert read_iso(iso) == data


def test_size_cap_64_mib():
    assert MAX_ISO_BYTES == 64 * 1024 * 1024
    data = sd.minimal_vmdata(userdata=b"\0" * (MAX_ISO_BYTES + 1))
    with pytest.raises(IsoTooLarge) as info:
        build_iso(data, max_userdata_bytes=MAX_ISO_BYTES * 2)
    assert info.value.field == "iso"
    with pytest.raises(IsoTooLarge):
        read_iso(b"\0" * (MAX_ISO_BYTES + 1))


def test_extra_files_kept_through_iso():
    data = sd.minimal_vmdata(extra_files={"ec2/latest/meta-data.json": b"{}", "openstack/content/0000": b"\x00x"})
    again = read_iso(build_iso(data))
    assert again.extra_files == data.extra_files
    assert again == data


@pytest.mark.parametrize(
    "tree, field",
    [
        (FileTree(files={"a": b"1", "a/b": b"2"}), "tree:a"),
        (FileTree(files={"x" * 65: b"1"}), "tree:" + "x" * 65),
        (FileTree(files={"d/" + "é" * 33: b"1"}), "tree:d/" + "é" * 33),
        (FileTree(files={"../a": b"1"}), "tree:../a"),
        (FileTree(files={"a": b"1"}, links={"b": "missing"}), "tree:b"),
        (FileTree(files={"a": b"1"}, label="x" * 17), "label"),
    ],
)
def test_tree_to_iso_rejects_what_an_iso_cannot_hold(tree, field):
    with pytest.raises(ValidationError) as info:
        tree_to_iso(tree)
    assert info.value.field == field


def test_long_and_odd_names_survive():
    files = {
        "openstack/latest/meta_data.json": b'{"uuid": "x"}',
        "extra/" + "n" * 64: b"1",
        "extra/with space;semi*star?.txt": b"2",
        "extra/ünï😀": b"3",
        "extra/A": b"4",
        "extra/a": b"5",
        "extra/a.b.c.d": b"6",
    }
    tree = iso_to_tree(tree_to_iso(FileTree(files=dict(files))))
    assert tree.files == files


@pytest.mark.parametrize(
    "blob",
    [b"", b"\0" * 100, b"\0" * (40 * 2048), b"not an iso at all" * 1000],
    ids=["empty", "short", "zeros", "text"],
)
def test_garbage_is_a_validation_error(blob):
    with pytest.raises(ValidationError) as info:
        read_iso(blob)
    assert info.value.field == "iso"


def test_iso_that_is_no_config_drive():
    iso = tree_to_iso(FileTree(files={"readme.txt": b"hello"}))
    with pytest.raises(ValidationError) as info:
        read_iso(iso)
    assert info.value.field == "iso:openstack/latest/meta_data.json"


def test_truncated_image_is_a_validation_error(sample_iso):
    for cut in (16 * 2048 + 100, 17 * 2048, 19 * 2048, len(sample_iso) // 2):
        with pytest.raises(ValidationError):
            read_iso(sample_iso[:cut])


def test_same_content_same_bytes_whatever_the_clock_and_zone(tmp_path):
    # Reproducible drives: another process, another time zone, another second -> identical bytes.
    here = build_iso(sd.sample_vmdata())
    script = (
        "import sys, sample_data as sd; from esxi_configdrive import build_iso; "
        "sys.stdout.buffer.write(build_iso(sd.sample_vmdata()))"
    )
    env = {**os.environ, "TZ": "Asia/Kolkata", "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("SOURCE_DATE_EPOCH", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == here
    assert build_iso(sd.sample_vmdata(password="other")) != here

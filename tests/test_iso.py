"""ISO 9660 writing and reading, checked with an independent parser (sample_data.iso_listing), not the tool's."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sample_data as sd

from esxi_configdrive import ValidationError, build_iso, read_iso
from esxi_configdrive import iso as iso_module
from esxi_configdrive.iso import MAX_ISO_BYTES, IsoTooLarge, iso_digest, iso_to_tree, tree_to_iso
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


# ---- byte-identical output: pinned digests and the layout cache --------------------------------------------

_TYPICAL_SIZES = {
    "cloudstack/metadata/availability-zone.txt": 6,
    "cloudstack/metadata/cloud-identifier.txt": 19,
    "cloudstack/metadata/instance-id.txt": 9,
    "cloudstack/metadata/local-hostname.txt": 6,
    "cloudstack/metadata/public-keys.txt": 95,
    "cloudstack/metadata/service-offering.txt": 14,
    "cloudstack/metadata/vm-id.txt": 36,
    "cloudstack/password/vm-password-md5checksum.txt": 32,
    "cloudstack/password/vm_password.txt": 10,
    "cloudstack/userdata/user_data.txt": 141,
    "openstack/latest/meta_data.json": 402,
    "openstack/latest/network_data.json": 2,
    "openstack/latest/vendor_data.json": 674,
}
_TYPICAL_LINKS = {
    "cloudstack/password/vm_password_md5checksum.txt": "cloudstack/password/vm-password-md5checksum.txt",
    "openstack/latest/user_data": "cloudstack/userdata/user_data.txt",
}
_TYPICAL_PRIVATE = {
    "cloudstack/password/vm-password-md5checksum.txt",
    "cloudstack/password/vm_password.txt",
    "openstack/latest/meta_data.json",
    "openstack/latest/vendor_data.json",
}
_DATED_LINKS = {
    f"openstack/{version}/{name}": target
    for version in ("2012-08-10", "2018-08-27")
    for name, target in (
        ("meta_data.json", "openstack/latest/meta_data.json"),
        ("user_data", "cloudstack/userdata/user_data.txt"),
        ("network_data.json", "openstack/latest/network_data.json"),
    )
}
# name -> (file sizes, hard links, private files, label): the drive's real layout, its dated variant, and the
# corners of the format (empty files, sizes at the 2048-byte block boundary, a directory whose records span several
# blocks, names that mangle alike, Rock Ridge relocation past depth 8, a large file).
SHAPES: dict[str, tuple[dict[str, int], dict[str, str], set[str], str]] = {
    "typical": (_TYPICAL_SIZES, _TYPICAL_LINKS, _TYPICAL_PRIVATE, "config-2"),
    "dated": (_TYPICAL_SIZES, {**_TYPICAL_LINKS, **_DATED_LINKS}, _TYPICAL_PRIVATE, "config-2"),
    "boundaries": (
        {"a/empty": 0, "a/one": 1, "a/b2047": 2047, "a/b2048": 2048, "a/b2049": 2049, "b/b4096": 4096},
        {"b/link-empty": "a/empty", "b/link": "a/b2049"},
        {"a/one"},
        "CONFIG-2",
    ),
    "wide": (
        {f"w/file-{i:03d}-{'x' * 40}.txt": i * 37 for i in range(100)},
        {"top": "w/file-001-" + "x" * 40 + ".txt"},
        set(),
        "config-2",
    ),
    "odd-names": (
        {
            "extra/" + "n" * 64: 3,
            "extra/with space;semi*star?.txt": 5,
            "extra/ünï😀": 7,
            "extra/A": 1,
            "extra/a": 2,
            "extra/a.b.c.d": 9,
            "openstack/latest/meta_data.json": 20,
        },
        {"extra/ünï😀-link": "extra/A"},
        {"extra/a"},
        "x" * 16,
    ),
    "deep": (
        {"d1/d2/d3/d4/d5/d6/d7/d8/d9/leaf.txt": 50, "d1/top.txt": 10, "d1/d2/d3/d4/d5/d6/d7/d8/mid": 3000},
        {"d1/d2/d3/d4/d5/d6/d7/d8/d9/link": "d1/top.txt"},
        set(),
        "config-2",
    ),
    "big": (
        {"openstack/latest/user_data": 1024 * 1024 + 5, "openstack/latest/meta_data.json": 300},
        {"cloudstack/userdata/user_data.txt": "openstack/latest/user_data"},
        set(),
        "cidata",
    ),
}


def shaped_tree(shape: str, salt: int = 0, sizes: dict[str, int] | None = None) -> FileTree:
    """A tree of ``shape`` whose contents are deterministic bytes (differing with ``salt``) of the shape's sizes
    or of ``sizes``."""
    base, links, private, label = SHAPES[shape]
    files = {}
    for path, size in {**base, **(sizes or {})}.items():
        unit = f"{salt}:{path}|".encode()
        files[path] = (unit * (size // len(unit) + 1))[:size]
    return FileTree(files=files, links=dict(links), label=label, private=set(private))


# SHA-256 of tree_to_iso(shaped_tree(name)), computed by the code before layouts were reused (commit 7e465ed:
# one fresh PyCdlib per build), with pycdlib 1.22.0 and the default SOURCE_DATE_EPOCH. Drive names, recorded
# digests and cassettes depend on these bytes: a change here is a change of every drive, not a test to update.
PINNED = {
    "typical": "aebfc09233e67e140df43f8178529f2c796c654b89d3547ba12d9fa17afecee1",
    "dated": "4718a5c4cdc760d73b29bcd0dd0d311001a143960d4e61a018457321576e6edf",
    "boundaries": "47210db6687a96d2cfa617050388ba61b31ac071f51c4a8639a30bd80a175c94",
    "wide": "4f372d54eff756600f8b9243edb736d2050097e96528bb3a14750a4ec6762949",
    "odd-names": "c6dfe5f835b02e57af0552ccb5365a697bc52bd0c93d72f2e4f475525482afd4",
    "deep": "e303b44d919cdf9b827ac0aa57269f89511fc9ce8f7c8eae15d9daa14e7946d7",
    "big": "d45229be0848ac9382a0884cf98da82b47076ff33178e1733af550b11d34da3b",
}


def _contents(tree: FileTree) -> dict[str, bytes | None]:
    return {path: tree.read(path) for path in tree.all_paths()}


def fresh_iso(tree: FileTree) -> bytes:
    """The old algorithm: a build with no layout kept from an earlier one."""
    iso_module._LAYOUTS.clear()
    return tree_to_iso(tree)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_pinned_bytes_fresh_and_from_a_reused_layout(shape):
    assert iso_module.BUILD_EPOCH == 946684800, "the pinned digests are for the default SOURCE_DATE_EPOCH"
    assert iso_digest(fresh_iso(shaped_tree(shape))) == PINNED[shape]
    other = tree_to_iso(shaped_tree(shape, salt=1))  # refills the layout the first build left
    assert iso_digest(other) != PINNED[shape]
    assert _contents(iso_to_tree(other)) == _contents(shaped_tree(shape, salt=1))
    assert iso_digest(tree_to_iso(shaped_tree(shape))) == PINNED[shape]  # refilled again, back to the first


def _size_variants(shape: str, count: int) -> list[FileTree]:
    """Trees of one layout whose sizes jump around: empty <-> not, either side of the 2048-byte block, larger."""
    rng = random.Random(shape)
    paths = sorted(SHAPES[shape][0])
    corners = [0, 1, 2047, 2048, 2049, 4096, 6145, 30_000]
    trees = []
    for salt in range(count):
        sizes = {path: rng.choice(corners) if rng.random() < 0.6 else rng.randrange(20_000) for path in paths}
        trees.append(shaped_tree(shape, salt=salt, sizes=sizes))
    return trees


@pytest.mark.parametrize("shape", sorted(set(SHAPES) - {"big"}))
def test_a_reused_layout_writes_what_a_fresh_build_writes(shape):
    trees = _size_variants(shape, 12)
    iso_module._LAYOUTS.clear()
    reused = [iso_digest(tree_to_iso(tree)) for tree in trees]  # the first fresh, then eleven refills in a row
    assert [iso_digest(fresh_iso(tree)) for tree in trees] == reused
    assert len(set(reused)) == len(trees)


def test_builds_in_threads_are_each_their_own_drive():
    trees = [shaped_tree(shape, salt=i) for i in range(40) for shape in ("typical", "dated", "boundaries")]
    expected = [iso_digest(fresh_iso(tree)) for tree in trees]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda tree: iso_digest(tree_to_iso(tree)), trees))
    assert got == expected


def test_kept_layouts_hold_no_content():
    secret = b"Passw0rd-kept-nowhere"
    tree = shaped_tree("typical")
    tree.files["cloudstack/password/vm_password.txt"] = secret
    for _ in range(2):  # fresh, then refilled
        assert secret in tree_to_iso(tree)
        kept = list(iso_module._LAYOUTS._idle.values())
        assert kept and all(fp.closed for layout in kept for fp in layout.buffers.values())


def test_huge_layouts_are_not_kept():
    tree = FileTree(files={f"many/f{i:04d}": b"x" for i in range(1_100)})
    iso_module._LAYOUTS.clear()
    first = tree_to_iso(tree)
    assert iso_module._LAYOUTS._idle == {}
    assert tree_to_iso(tree) == first
    assert len(iso_to_tree(first).files) == 1_100


def test_layouts_that_differ_only_in_modes_links_or_label_are_not_confused():
    base = shaped_tree("typical")
    variants = [base]
    for change in ("private", "link", "label", "file"):
        tree = shaped_tree("typical")
        if change == "private":
            tree.private = set()
        elif change == "link":
            del tree.links["openstack/latest/user_data"]
        elif change == "label":
            tree.label = "cidata"
        else:
            tree.files["openstack/latest/extra.json"] = b"{}"
        variants.append(tree)
    expected = [iso_digest(fresh_iso(tree)) for tree in variants]
    assert len(set(expected)) == len(variants)
    for _ in range(2):  # every layout kept, then each refilled
        assert [iso_digest(tree_to_iso(tree)) for tree in variants] == expected

"""Built ISOs read by readers nobody here wrote: blkid, isoinfo, 7-Zip, cloud-init (Debian's package) and
cloudbase-init. A missing reader skips its test, or fails it when ESXI_CONFIGDRIVE_REQUIRE_READERS=1 (CI).

cloud-init and cloudbase-init run in subprocesses, so their modules (and cloud-init's sys.path) stay out of the
test process.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sample_data as sd
import yaml

from esxi_configdrive import build_iso
from esxi_configdrive.iso import tree_to_iso
from esxi_configdrive.layout import FileTree, build_tree

pytestmark = pytest.mark.readers

BINARY_USERDATA = bytes(range(256)) + b"\r\n\x00 end"


@pytest.fixture(scope="module")
def drives(tmp_path_factory) -> dict[str, Path]:
    """A few built drives, as files."""
    root = tmp_path_factory.mktemp("drives")
    variants = {
        "sample": sd.sample_vmdata(public_keys=list(sd.KEYS)),
        "dated": sd.sample_vmdata(dated_versions=True),
        "binary": sd.sample_vmdata(userdata=BINARY_USERDATA, password_vendor_data=False),
        "minimal": sd.minimal_vmdata(),
        "label": sd.sample_vmdata(label="CONFIG-2"),
    }
    out = {}
    for name, data in variants.items():
        path = root / f"{name}.iso"
        path.write_bytes(build_iso(data))
        out[name] = path
    return out


@pytest.fixture(scope="module")
def extracted(drives, tmp_path_factory) -> dict[str, Path]:
    """Each drive extracted with 7-Zip (the way cloudbase-init extracts a config drive on Windows)."""
    root = tmp_path_factory.mktemp("extracted")
    return {name: sd.extract_with_7z(path, root / name) for name, path in drives.items()}


# ---- blkid ------------------------------------------------------------------------------------------------


def blkid(path: Path) -> dict[str, str]:
    proc = sd.run([sd.need_tool("blkid"), "-p", "-o", "export", str(path)])
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def test_blkid_label_and_type(drives):
    info = blkid(drives["sample"])
    assert info["TYPE"] == "iso9660"
    assert info["LABEL"] == "config-2"  # exactly what cloud-init's ds-identify looks for


def test_blkid_custom_label(drives, tmp_path):
    assert blkid(drives["label"])["LABEL"] == "CONFIG-2"
    other = tmp_path / "other.iso"
    other.write_bytes(build_iso(sd.minimal_vmdata(), label="my-seed_16chars!"))
    assert blkid(other)["LABEL"] == "my-seed_16chars!"


# ---- isoinfo ----------------------------------------------------------------------------------------------


def isoinfo(*args: str) -> str:
    return sd.run([sd.need_tool("isoinfo"), *args]).stdout


def test_isoinfo_sees_joliet_and_rock_ridge(drives):
    out = isoinfo("-d", "-i", str(drives["sample"]))
    assert re.search(r"^Volume id: config-2$", out, re.M), out
    assert "Joliet with UCS level" in out, out
    assert re.search(r"^Rock Ridge signatures version \d+ found$", out, re.M), out


def isoinfo_listing(path: Path, tree_flag: str) -> dict[str, int]:
    """isoinfo -l with -R or -J: {path: extent} for every file."""
    files: dict[str, int] = {}
    directory = "/"
    for line in isoinfo("-l", tree_flag, "-i", str(path)).splitlines():
        header = re.match(r"^Directory listing of (/.*)$", line)
        if header:
            directory = header.group(1)
            continue
        entry = re.match(r"^(-)\S+\s.*\[\s*(\d+)\s+\d+\]\s\s(.*?)\s?$", line)
        if entry:
            files[(directory + entry.group(3)).lstrip("/")] = int(entry.group(2))
    return files


@pytest.mark.parametrize("tree_flag", ["-R", "-J"])
def test_isoinfo_names_and_hard_links(drives, tree_flag):
    files = isoinfo_listing(drives["dated"], tree_flag)
    expected = set(build_tree(sd.sample_vmdata(dated_versions=True)).all_paths())
    assert set(files) == expected
    user_data = {files[p] for p in files if p.endswith(("/user_data", "/user_data.txt"))}
    assert len(user_data) == 1, user_data  # 9 names (latest, 8 dated, cloudstack) - one extent
    checksum = {files[p] for p in files if "md5checksum" in p}
    assert len(checksum) == 1
    meta = {files[p] for p in files if p.endswith("/meta_data.json")}
    assert len(meta) == 1
    assert len(set(files.values())) > 3  # the listing does tell files apart


# ---- 7-Zip ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sample", "dated", "binary", "minimal"])
def test_7z_extracts_exact_names_and_bytes(drives, extracted, name):
    from esxi_configdrive import read_iso

    tree = build_tree(read_iso(drives[name]))
    files = sd.files_under(extracted[name])
    assert set(files) == set(tree.all_paths())
    for path, content in files.items():
        assert content == tree.read(path), path


def test_7z_sample_names(extracted):
    files = sd.files_under(extracted["sample"])
    assert files["openstack/latest/user_data"] == sd.USERDATA
    assert files["cloudstack/userdata/user_data.txt"] == sd.USERDATA
    assert files["cloudstack/password/vm_password.txt"] == sd.PASSWORD.encode()
    assert (
        files["cloudstack/password/vm-password-md5checksum.txt"]
        == files["cloudstack/password/vm_password_md5checksum.txt"]
    )
    assert not any(p != p.lower() and p.upper() == p for p in files)  # no USER_DAT.;1-style names


# ---- cloud-init -------------------------------------------------------------------------------------------

CLOUD_INIT_SCRIPT = r"""
import base64, json, os, shutil, sys, tempfile
sys.path.insert(0, sys.argv[1])
drive = sys.argv[2]
known_mac = sys.argv[3] if len(sys.argv) > 3 else None
import logging
logging.disable(logging.CRITICAL)
from cloudinit import helpers
from cloudinit.sources import convert_vendordata
from cloudinit.sources.helpers import openstack
from cloudinit.sources import DataSourceConfigDrive as dscd

def b64(x):
    return base64.b64encode(x).decode() if isinstance(x, bytes) else x

out = {}
reader = openstack.ConfigDriveReader(drive)
try:
    result = reader.read_v2()
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    sys.exit(0)
out["version_dir"] = reader._find_working_version()
out["metadata"] = {k: b64(v) for k, v in result["metadata"].items()}
out["userdata"] = b64(result["userdata"])
out["vendordata"] = result["vendordata"]
out["networkdata"] = result.get("networkdata")  # no network_data.json: no key
out["converted_vendordata"] = convert_vendordata(result["vendordata"])

# The datasource, as cloud-init runs it at boot, fed the drive through its seed directory.
tmp = tempfile.mkdtemp()
cloud = os.path.join(tmp, "cloud")
os.makedirs(os.path.join(cloud, "seed"))
shutil.copytree(drive, os.path.join(cloud, "seed", "config_drive"))
paths = helpers.Paths({"cloud_dir": cloud, "run_dir": os.path.join(tmp, "run")})
ds = dscd.DataSourceConfigDrive(sys_cfg={}, distro=None, paths=paths)
out["ds_found"] = ds.get_data()
out["ds_instance_id"] = ds.get_instance_id()
out["ds_hostname"] = ds.get_hostname().hostname
out["ds_keys"] = ds.get_public_ssh_keys()
out["ds_userdata_raw"] = b64(ds.userdata_raw)
out["ds_vendordata_raw"] = ds.vendordata_raw
# how cloud-init's user-data processor splits the vendor data into parts (cloud-config, boothook, ...)
from cloudinit import user_data as ud
message = ud.UserDataProcessor(paths).process(ds.vendordata_raw) if ds.vendordata_raw else None
parts = [p for p in message.walk() if not p.is_multipart()] if message else []
out["vendor_part_types"] = [p.get_content_type() for p in parts]
# what cloud-init's handlers get: each part's payload, decoded as cloud-init decodes it
out["vendor_parts"] = [p.get_payload(decode=True).decode("utf-8") for p in parts]
if known_mac:
    ds.known_macs = {known_mac: "ens192"}
    out["ds_network_config"] = ds.network_config
shutil.rmtree(tmp)
print(json.dumps(out))
"""


def cloud_init_read(drive: Path, known_mac: str | None = None) -> dict:
    path = sd.cloud_init_path()
    args = [sys.executable, "-c", CLOUD_INIT_SCRIPT, path, str(drive)] + ([known_mac] if known_mac else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cloud_init_reads_the_drive(extracted):
    mac = sd.NETWORK_DATA["links"][0]["ethernet_mac_address"]
    got = cloud_init_read(extracted["sample"], known_mac=mac)
    assert "error" not in got, got
    meta = got["metadata"]
    assert meta["uuid"] == sd.VM_ID
    assert meta["hostname"] == sd.HOSTNAME
    assert meta["availability_zone"] == "zone-a"
    assert sorted(meta["public_keys"].values()) == sorted(sd.KEYS)
    assert base64.b64decode(got["userdata"]) == sd.USERDATA
    assert got["networkdata"] == sd.NETWORK_DATA
    assert got["version_dir"] == "latest"

    # vendor data: the password as cloud-config, which is what cloud-init acts on, and the boothook that lets a
    # new password apply at the next boot
    assert set(got["vendordata"]) == {"cloud-init"}
    assert got["converted_vendordata"].startswith("Content-Type: multipart/mixed")  # one string: cloud-init 24.4+
    assert got["vendor_part_types"] == ["text/cloud-config", "text/cloud-boothook"]
    cloud_config, boothook = got["vendor_parts"]
    assert cloud_config.startswith("#cloud-config")
    assert yaml.safe_load(cloud_config) == {"password": sd.PASSWORD, "chpasswd": {"expire": False}}
    assert boothook.startswith("#cloud-boothook\n#!/bin/sh\n") and sd.PASSWORD not in boothook

    # the datasource level
    assert got["ds_found"] is True
    assert got["ds_instance_id"] == sd.VM_ID
    assert got["ds_hostname"] == sd.HOSTNAME
    assert sorted(got["ds_keys"]) == sorted(sd.KEYS)
    assert base64.b64decode(got["ds_userdata_raw"]) == sd.USERDATA
    assert got["ds_vendordata_raw"] == got["converted_vendordata"]
    config = got["ds_network_config"]
    assert [(c["type"], c["mac_address"], c["name"]) for c in config["config"] if c["type"] == "physical"] == [
        ("physical", mac, "ens192")
    ]


def test_cloud_init_gets_a_password_outside_ascii_unchanged(tmp_path):
    """The vendor data's parts are base64 inside the MIME message: an 8-bit part would reach cloud-init's handlers
    re-encoded by Python's email parser (latin-1 for "é", escapes for "😀")."""
    password = 'Pässwörd "😀" \\ ok'
    drive = tmp_path / "unicode.iso"
    drive.write_bytes(build_iso(sd.minimal_vmdata(password=password)))
    got = cloud_init_read(sd.extract_with_7z(drive, tmp_path / "unicode"))
    cloud_config, _ = got["vendor_parts"]
    assert yaml.safe_load(cloud_config)["password"] == password


def test_cloud_init_binary_userdata_and_no_password_vendor_data(extracted):
    got = cloud_init_read(extracted["binary"])
    assert base64.b64decode(got["userdata"]) == BINARY_USERDATA
    assert got["vendordata"] == {}
    assert got["converted_vendordata"] is None
    assert got["ds_found"] is True and got["ds_instance_id"] == sd.VM_ID


def test_cloud_init_minimal_drive(extracted):
    got = cloud_init_read(extracted["minimal"])
    assert got["metadata"]["uuid"] == sd.VM_ID
    assert got["userdata"] in (None, b"", "")
    assert got["ds_found"] is True and got["ds_keys"] == []


def test_cloud_init_picks_the_newest_dated_folder(extracted):
    got = cloud_init_read(extracted["dated"])
    assert got["version_dir"] == "2018-08-27"
    assert got["metadata"]["uuid"] == sd.VM_ID
    assert base64.b64decode(got["userdata"]) == sd.USERDATA
    assert got["networkdata"] == sd.NETWORK_DATA


def test_cloud_init_rejects_a_drive_without_uuid(tmp_path):
    # The harness can fail: a meta_data.json without uuid is refused by cloud-init's reader.
    iso = tmp_path / "no-uuid.iso"
    iso.write_bytes(tree_to_iso(FileTree(files={"openstack/latest/meta_data.json": b'{"hostname": "h"}'})))
    got = cloud_init_read(sd.extract_with_7z(iso, tmp_path / "x"))
    assert got.get("error") == "BrokenMetadata", got


# ---- cloudbase-init ---------------------------------------------------------------------------------------

CLOUDBASE_SCRIPT = r"""
import base64, json, sys, logging
logging.disable(logging.CRITICAL)
from cloudbaseinit.metadata.services.base import NotExistingMetadataException
from cloudbaseinit.metadata.services.configdrive import ConfigDriveService
s = ConfigDriveService()
s._metadata_path = sys.argv[1]
try:
    user_data = s.get_user_data()
except NotExistingMetadataException:  # no user data: cloudbase-init's UserDataPlugin skips, as here
    user_data = None
net = s.get_network_details_v2()
print(json.dumps({
    "instance_id": s.get_instance_id(),
    "host_name": s.get_host_name(),
    "public_keys": s.get_public_keys(),
    "admin_password": s.get_admin_password(),
    "user_data": base64.b64encode(user_data).decode() if user_data is not None else None,
    "macs": [link.mac_address for link in net.links] if net else [],
}))
"""


def cloudbase_init_read(drive: Path) -> dict:
    sd.need_importable("cloudbase-init", "cloudbaseinit.metadata.services.configdrive")
    proc = subprocess.run(
        [sys.executable, "-c", CLOUDBASE_SCRIPT, str(drive)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cloudbase_init_reads_the_drive(extracted):
    got = cloudbase_init_read(extracted["sample"])
    assert got["instance_id"] == sd.VM_ID
    assert got["host_name"] == sd.HOSTNAME
    assert sorted(got["public_keys"]) == sorted(sd.KEYS)
    assert got["admin_password"] == sd.PASSWORD
    assert base64.b64decode(got["user_data"]) == sd.USERDATA
    assert got["macs"] == [sd.NETWORK_DATA["links"][0]["ethernet_mac_address"]]


def test_cloudbase_init_binary_userdata_and_password_without_vendor_data(extracted):
    got = cloudbase_init_read(extracted["binary"])
    assert base64.b64decode(got["user_data"]) == BINARY_USERDATA
    assert got["admin_password"] == sd.PASSWORD  # admin_pass comes from meta_data.json, not vendor data


def test_cloudbase_init_minimal_drive(extracted):
    got = cloudbase_init_read(extracted["minimal"])
    assert got["instance_id"] == sd.VM_ID
    assert got["admin_password"] is None
    assert got["public_keys"] in ([], None)
    assert got["user_data"] is None


# ---- the `network` section, as both readers take it -----------------------------------------------------------

STATIC_MACS = ("00:50:56:aa:bb:01", "00:50:56:aa:bb:02")
STATIC_NETWORK = {
    "interfaces": [
        {
            "mac": STATIC_MACS[0],
            "mtu": 9000,
            "addresses": ["10.1.2.3/24", "2001:db8::3/64"],
            "gateway4": "10.1.2.1",
            "gateway6": "2001:db8::1",
            "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.254"}],
        },
        {"mac": STATIC_MACS[1], "dhcp4": True},
    ],
    "dns": ["10.1.0.2", "2001:db8::53"],
    "dns_search": ["example.com", "corp.example"],
}


# cloud-init's datasource with the guest's NICs by MAC, its v1 config, and what two of its renderers write from it
# (systemd-networkd's .network files, netplan's YAML), all cloud-init's own code.
def seeded(seed_dir: str) -> str:
    """The start of a script that runs cloud-init's own code (its package's folder: argv[1]) on a drive's files
    (argv[2]) copied into its seed directory ``seed_dir``; ``cloud`` and ``tmp`` are its folders."""
    return rf"""
import base64, json, os, shutil, sys, tempfile
sys.path.insert(0, sys.argv[1])
import logging
logging.disable(logging.CRITICAL)
from cloudinit import helpers
tmp = tempfile.mkdtemp()
cloud = os.path.join(tmp, "cloud")
os.makedirs(os.path.join(cloud, "seed"))
shutil.copytree(sys.argv[2], os.path.join(cloud, "seed", "{seed_dir}"))
"""


CLOUD_INIT_NETWORK_SCRIPT = (
    seeded("config_drive")
    + r"""
from cloudinit.net import netplan, network_state, networkd
from cloudinit.sources import DataSourceConfigDrive as dscd
ds = dscd.DataSourceConfigDrive(sys_cfg={}, distro=None, paths=helpers.Paths({"cloud_dir": cloud, "run_dir": tmp}))
assert ds.get_data()
ds.known_macs = json.loads(sys.argv[3])
config = ds.network_config
state = network_state.parse_net_config_data(config)
print(json.dumps({
    "config": config,
    "networkd": networkd.Renderer({})._render_content(state),
    "netplan": netplan.Renderer({})._render_content(state),
}))
shutil.rmtree(tmp)
"""
)


@pytest.fixture(scope="module")
def static_drive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("static")
    iso = root / "static.iso"
    iso.write_bytes(build_iso(sd.sample_vmdata(network_data={}, network=STATIC_NETWORK)))
    return sd.extract_with_7z(iso, root / "x")


def test_cloud_init_converts_the_network_section_to_exactly_what_was_asked(static_drive):
    names = {STATIC_MACS[0]: "ens192", STATIC_MACS[1]: "ens224"}
    proc = subprocess.run(
        [sys.executable, "-c", CLOUD_INIT_NETWORK_SCRIPT, sd.cloud_init_path(), str(static_drive), json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    physical = {c["name"]: c for c in got["config"]["config"] if c["type"] == "physical"}
    assert sorted(physical) == ["ens192", "ens224"]
    first, second = physical["ens192"], physical["ens224"]
    assert (first["mac_address"], first["mtu"], second["mac_address"]) == (STATIC_MACS[0], 9000, STATIC_MACS[1])
    v4, v6 = first["subnets"]
    assert (v4["type"], v4["address"], v4["netmask"]) == ("static", "10.1.2.3", "255.255.255.0")
    assert [(r["network"], r["netmask"], r["gateway"]) for r in v4["routes"]] == [
        ("0.0.0.0", "0.0.0.0", "10.1.2.1"),
        ("10.9.0.0", "255.255.0.0", "10.1.2.254"),
    ]
    assert (v6["type"], v6["address"]) == ("static6", "2001:db8::3")
    assert [(r["network"], r["gateway"]) for r in v6["routes"]] == [("::", "2001:db8::1")]
    assert [s["type"] for s in second["subnets"]] == ["dhcp4"]
    nameservers = [c for c in got["config"]["config"] if c["type"] == "nameserver"]
    assert [(n["address"], n.get("search")) for n in nameservers] == [
        ("10.1.0.2", ["example.com", "corp.example"]),
        ("2001:db8::53", None),
    ]

    # what the guest's network service gets (systemd-networkd), per NIC
    ens192 = got["networkd"]["ens192"]
    for line in (
        "MACAddress=00:50:56:aa:bb:01",
        "Address=10.1.2.3/24",
        "Address=2001:db8::3/64",
        "MTUBytes=9000",
        "DHCP=no",
        "DNS=10.1.0.2 2001:db8::53",
        "Domains=example.com corp.example",
        "Destination=0.0.0.0/0",
        "Gateway=10.1.2.1",
        "Destination=10.9.0.0/16",
        "Gateway=10.1.2.254",
        "Destination=::/0",
        "Gateway=2001:db8::1",
    ):
        assert line in ens192.splitlines(), (line, ens192)
    assert "DHCP=ipv4" in got["networkd"]["ens224"].splitlines()
    # and netplan: the global name servers and search domains on the static interface
    plan = yaml.safe_load(got["netplan"])["network"]["ethernets"]
    assert plan["ens192"]["nameservers"] == {
        "addresses": ["10.1.0.2", "2001:db8::53"],
        "search": ["example.com", "corp.example"],
    }
    assert {"to": "0.0.0.0/0", "via": "10.1.2.1"} in plan["ens192"]["routes"]
    assert plan["ens224"]["dhcp4"] is True


def cloudbase_service(service: str) -> str:
    """The start of a script that reads a drive's files (argv[1]) with cloudbase-init's metadata service
    ``module.Class`` (under cloudbaseinit.metadata.services) as ``s``, its network details as ``net``."""
    module, cls = service.rsplit(".", 1)
    return rf"""
import base64, json, sys, logging
logging.disable(logging.CRITICAL)
from cloudbaseinit.metadata.services.{module} import {cls}
s = {cls}()
s._metadata_path = sys.argv[1]
net = s.get_network_details_v2()
"""


def run_reader(script: str, *args: str) -> dict:
    """Run a reader script in a fresh interpreter; its last line of output, parsed."""
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CLOUDBASE_NETWORK_SCRIPT = (
    cloudbase_service("configdrive.ConfigDriveService")
    + r"""
print(json.dumps({
    "links": [[link.id, link.mac_address, link.mtu, link.type] for link in net.links],
    "networks": [
        [n.link, n.address_cidr, [[r.network_cidr, r.gateway] for r in n.routes], n.dns_nameservers]
        for n in net.networks
    ],
    "services": [[type(x).__name__, x.addresses, x.search] for x in net.services],
}))
"""
)


def test_cloudbase_init_reads_the_network_section(static_drive):
    cloudbase_init_read(static_drive)  # skips, or fails in CI, when cloudbase-init is missing
    proc = subprocess.run(
        [sys.executable, "-c", CLOUDBASE_NETWORK_SCRIPT, str(static_drive)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["links"] == [["eth0", STATIC_MACS[0], 9000, "physical"], ["eth1", STATIC_MACS[1], None, "physical"]]
    # cloudbase-init configures static networks only (DHCP is Windows' default); its gateway is the /0 route
    assert got["networks"] == [
        ["eth0", "10.1.2.3/24", [["0.0.0.0/0", "10.1.2.1"], ["10.9.0.0/16", "10.1.2.254"]], []],
        ["eth0", "2001:db8::3/64", [["::/0", "2001:db8::1"]], []],
    ]
    assert got["services"] == [["NameServerService", ["10.1.0.2", "2001:db8::53"], None]]

"""NoCloud seeds read by real readers: blkid (label, file system), 7-Zip (names and bytes), cloud-init's own NoCloud
datasource and network parser (Debian's package, scripts/fetch-cloud-init) and cloudbase-init's NoCloud service.
A missing reader skips its test, or fails it when ESXI_CONFIGDRIVE_REQUIRE_READERS=1 (CI), as in test_readers.py.

cloudbase-init's NoCloud service reads meta-data, user-data and network-config; it has no password source (its
``get_admin_password`` is the base class's None): Windows guests get their password from the config drive."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import sample_data as sd
import yaml
from test_readers import STATIC_MACS, STATIC_NETWORK, blkid, cloudbase_service, run_reader, seeded

from esxi_configdrive import build_iso
from esxi_configdrive.transport import Transport

pytestmark = pytest.mark.readers

NETWORK = {**STATIC_NETWORK, "interfaces": [dict(i, id=f"eth{n}") for n, i in enumerate(STATIC_NETWORK["interfaces"])]}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seeds")
    variants = {
        "sample": sd.sample_vmdata(public_keys=list(sd.KEYS), network_data={}, network=NETWORK),
        "minimal": sd.minimal_vmdata(),
    }
    out = {}
    for name, data in variants.items():
        path = root / f"{name}.iso"
        path.write_bytes(build_iso(data, transport=Transport.NOCLOUD))
        out[name] = path
    return out


@pytest.fixture(scope="module")
def extracted(seeds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("extracted")
    return {name: sd.extract_with_7z(path, root / name) for name, path in seeds.items()}


def test_blkid_label_and_type(seeds: dict[str, Path]) -> None:
    info = blkid(seeds["sample"])
    assert info["TYPE"] == "iso9660" and info["LABEL"] == "cidata"  # what cloud-init's NoCloud looks for


def test_7z_lists_exact_names_and_bytes(extracted: dict[str, Path]) -> None:
    files = sd.files_under(extracted["sample"])
    assert sorted(files) == ["meta-data", "network-config", "user-data", "vendor-data"]
    assert files["user-data"] == sd.USERDATA
    assert sorted(sd.files_under(extracted["minimal"])) == ["meta-data", "user-data"]


# ---- cloud-init ---------------------------------------------------------------------------------------------

CLOUD_INIT_NOCLOUD_SCRIPT = (
    seeded("nocloud")
    + r"""
from cloudinit import user_data as ud
from cloudinit.net import netplan, network_state
from cloudinit.sources import DataSourceNoCloud as dsnc
paths = helpers.Paths({"cloud_dir": cloud, "run_dir": os.path.join(tmp, "run")})
ds = dsnc.DataSourceNoCloud(sys_cfg={}, distro=None, paths=paths)
out = {"found": ds.get_data()}
out["instance_id"] = ds.get_instance_id()
out["hostname"] = ds.get_hostname().hostname
out["keys"] = ds.get_public_ssh_keys()
out["userdata_raw"] = base64.b64encode(ds.userdata_raw or b"").decode()
vendor = ds.vendordata_raw
message = ud.UserDataProcessor(paths).process(vendor) if vendor else None
parts = [p for p in message.walk() if not p.is_multipart()] if message else []
out["vendor_parts"] = [[p.get_content_type(), p.get_payload(decode=True).decode("utf-8")] for p in parts]
config = ds.network_config
out["network_config"] = config
if config:
    state = network_state.parse_net_config_data(config)
    out["netplan"] = netplan.Renderer({})._render_content(state)
shutil.rmtree(tmp)
print(json.dumps(out))
"""
)


def cloud_init_read(seed: Path) -> dict:
    return run_reader(CLOUD_INIT_NOCLOUD_SCRIPT, sd.cloud_init_path(), str(seed))


def test_cloud_init_nocloud_reads_the_seed(extracted: dict[str, Path]) -> None:
    got = cloud_init_read(extracted["sample"])
    assert got["found"] is True
    assert got["instance_id"] == sd.VM_ID and got["hostname"] == sd.HOSTNAME
    assert sorted(got["keys"]) == sorted(sd.KEYS)
    assert base64.b64decode(got["userdata_raw"]) == sd.USERDATA
    (config_type, config), (hook_type, hook) = got["vendor_parts"]
    assert (config_type, hook_type) == ("text/cloud-config", "text/cloud-boothook")
    assert yaml.safe_load(config) == {"password": sd.PASSWORD, "chpasswd": {"expire": False}}
    assert sd.PASSWORD not in hook
    # the network config as cloud-init parses it, and what its netplan renderer writes for the guest
    assert got["network_config"]["version"] == 2
    plan = yaml.safe_load(got["netplan"])["network"]["ethernets"]
    first, second = plan["eth0"], plan["eth1"]
    assert first["match"] == {"macaddress": STATIC_MACS[0]} and first["mtu"] == 9000
    assert first["addresses"] == ["10.1.2.3/24", "2001:db8::3/64"]
    assert {"to": "0.0.0.0/0", "via": "10.1.2.1"} in first["routes"]
    assert {"to": "10.9.0.0/16", "via": "10.1.2.254"} in first["routes"]
    assert first["nameservers"] == {
        "addresses": ["10.1.0.2", "2001:db8::53"],
        "search": ["example.com", "corp.example"],
    }
    assert second["match"] == {"macaddress": STATIC_MACS[1]} and second["dhcp4"] is True


def test_cloud_init_nocloud_minimal_seed_uses_dhcp(extracted: dict[str, Path]) -> None:
    got = cloud_init_read(extracted["minimal"])
    assert got["found"] is True and got["instance_id"] == sd.VM_ID
    assert got["network_config"] is None  # no network-config: cloud-init's fallback, DHCP on the first NIC
    assert got["vendor_parts"] == [] and base64.b64decode(got["userdata_raw"]) == b""


# ---- cloudbase-init -------------------------------------------------------------------------------------------

CLOUDBASE_NOCLOUD_SCRIPT = (
    cloudbase_service("nocloudservice.NoCloudConfigDriveService")
    + r"""
print(json.dumps({
    "instance_id": s.get_instance_id(),
    "host_name": s.get_host_name(),
    "public_keys": s.get_public_keys(),
    "admin_password": s.get_admin_password(),
    "user_data": base64.b64encode(s.get_user_data()).decode(),
    "links": [[link.id, link.mac_address, link.mtu] for link in net.links] if net else [],
    "networks": [[n.link, n.address_cidr, [[r.network_cidr, r.gateway] for r in n.routes]] for n in net.networks]
    if net else [],
}))
"""
)


def test_cloudbase_init_nocloud_reads_the_seed(extracted: dict[str, Path]) -> None:
    found = subprocess.run([sys.executable, "-c", "import cloudbaseinit"], capture_output=True, timeout=120)
    sd.need("cloudbase-init", found.returncode == 0, "not importable (pip: .[test])")
    got = run_reader(CLOUDBASE_NOCLOUD_SCRIPT, str(extracted["sample"]))
    assert got["instance_id"] == sd.VM_ID and got["host_name"] == sd.HOSTNAME
    assert sorted(got["public_keys"]) == sorted(sd.KEYS)
    assert base64.b64decode(got["user_data"]) == sd.USERDATA
    assert got["admin_password"] is None  # the NoCloud service has no password source (see the module's docs)
    assert [link[1] for link in got["links"]] == list(STATIC_MACS)
    # cloudbase-init's version 2 parser gives each address of an interface all of its routes
    assert [n[:2] for n in got["networks"]] == [["eth0", "10.1.2.3/24"], ["eth0", "2001:db8::3/64"]]
    routes = [["0.0.0.0/0", "10.1.2.1"], ["::/0", "2001:db8::1"], ["10.9.0.0/16", "10.1.2.254"]]
    assert all(sorted(n[2]) == sorted(routes) for n in got["networks"])

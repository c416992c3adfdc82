"""The guestinfo keys read by cloudbase-init's own ``VMwareGuestInfoService`` (the pip package of the test extra),
in a subprocess, through a STAND-IN ``rpctool``: a script answering ``info-get guestinfo.<key>`` from the keys
(exit 1 and nothing for a key not set, as VMware's rpctool does), and logging each call. Only VMware Tools' channel
is stood in; the decoding, parsing and network parsing are cloudbase-init's.

One adaptation: cloudbase-init runs the rpctool through ``execute_process(args, shell=True)``. On Windows a list
with shell=True is one command line; on Linux the shell would drop the argument, so the reader runs it with
shell=False (what the Windows call amounts to). cloud-init's reading of the same keys: tests/guest/
test_guest_guestinfo.py (booted guests)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sample_data as sd

from esxi_configdrive import VmData
from esxi_configdrive.guestinfo import guestinfo_keys

MAC = "00:50:56:aa:bb:07"
KEY = sd.ED25519_KEY

STAND_IN_RPCTOOL = r"""#!{python}
# STAND-IN for VMware Tools' rpctool (tests only): answers info-get from a JSON file of guestinfo keys
import json, sys
keys = json.load(open({keys!r}))
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
command = " ".join(sys.argv[1:]).split(" ", 1)
if command[0] == "info-get" and keys.get(command[1]):
    sys.stdout.write(keys[command[1]])
    sys.exit(0)
sys.stderr.write("No value found\n")
sys.exit(1)
"""

READER = r"""
import base64, functools, json, logging, sys
logging.disable(logging.CRITICAL)
from cloudbaseinit import conf
from cloudbaseinit.metadata.services.vmwareguestinfoservice import VMwareGuestInfoService
conf.CONF.set_override("vmware_rpctool_path", sys.argv[1], "vmwareguestinfo")
s = VMwareGuestInfoService()
run = s._osutils.execute_process
s._osutils.execute_process = lambda args, shell=True, decode_output=False: run(args, False, decode_output)
loaded = s.load()
user_data = s.get_user_data()
net = s.get_network_details_v2()
print(json.dumps({
    "loaded": loaded,
    "instance_id": s.get_instance_id(),
    "host_name": s.get_host_name(),
    "public_keys": s.get_public_keys(),
    "admin_password": s.get_admin_password(),
    "user_data": base64.b64encode(user_data).decode() if user_data is not None else None,
    "links": [link.mac_address for link in net.links] if net else [],
    "networks": [[n.address_cidr, n.routes and [(r.network_cidr, r.gateway) for r in n.routes]] for n in net.networks]
                if net else [],
    "dns": [list(s.addresses) for s in net.services] if net else [],
}))
"""


def cloudbase_init_guestinfo(keys: dict[str, str], tmp: Path) -> tuple[dict[str, Any], list[str]]:
    sd.need_importable("cloudbase-init", "cloudbaseinit.metadata.services.vmwareguestinfoservice")
    (tmp / "keys.json").write_text(json.dumps(keys))
    tool = tmp / "rpctool"
    tool.write_text(STAND_IN_RPCTOOL.format(python=sys.executable, keys=str(tmp / "keys.json"), log=str(tmp / "log")))
    tool.chmod(0o755)
    proc = subprocess.run([sys.executable, "-c", READER, str(tool)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), (tmp / "log").read_text().splitlines()


def vmdata(**extra: Any) -> VmData:
    return VmData.from_dict(
        {
            "metadata": {"vm-id": "5f1e2d3c-0000-4000-8000-000000000022", "local-hostname": "win-gi-1",
                         "public-keys": [KEY, sd.RSA_KEY]},
            "userdata": "#ps1_sysnative\nWrite-Host guestinfo\n" + "# padding that compresses well\n" * 20,
            "network": {"interfaces": [{"mac": MAC, "addresses": ["192.0.2.70/24"], "gateway4": "192.0.2.1"}],
                        "dns": ["192.0.2.53"]},
            **extra,
        }
    )  # fmt: skip


def test_cloudbase_init_reads_the_keys(tmp_path: Path) -> None:
    data = vmdata()
    keys = guestinfo_keys(data)
    assert keys["guestinfo.userdata.encoding"] == "gzip+base64"  # cloudbase-init decodes this one too
    got, calls = cloudbase_init_guestinfo(keys, tmp_path)
    assert got["loaded"] is True
    assert got["instance_id"] == data.vm_id and got["host_name"] == "win-gi-1"
    assert sorted(got["public_keys"]) == sorted([KEY, sd.RSA_KEY])  # from public-keys-data, its only form
    assert base64.b64decode(got["user_data"]) == data.userdata
    assert got["links"] == [MAC]
    assert got["networks"][0][0] == "192.0.2.70/24"
    assert ("0.0.0.0/0", "192.0.2.1") in [tuple(r) for r in got["networks"][0][1]]
    assert got["dns"] == [["192.0.2.53"]]
    # it reads the metadata and the user data (each with its encoding), never the vendor data
    assert calls == ["info-get guestinfo.metadata", "info-get guestinfo.metadata.encoding",
                     "info-get guestinfo.userdata", "info-get guestinfo.userdata.encoding"]  # fmt: skip


def test_cloudbase_init_gets_no_password_over_guestinfo(tmp_path: Path) -> None:
    """cloudbase-init takes a password from the metadata's admin-password only; the tool sends one (when asked
    for) in the vendor data, for cloud-init: a Windows guest gets none this way (docs/usage.md says so)."""
    keys = guestinfo_keys(vmdata(password="Win-Gi-Passw0rd-1"), password=True)
    got, calls = cloudbase_init_guestinfo(keys, tmp_path)
    assert got["admin_password"] is None and not any("vendordata" in c for c in calls)


@pytest.mark.parametrize("missing", ["guestinfo.userdata"])
def test_a_key_not_set_is_no_value(tmp_path: Path, missing: str) -> None:
    keys = guestinfo_keys(vmdata().copy(userdata=None))
    assert keys[missing] == ""
    got, _ = cloudbase_init_guestinfo(keys, tmp_path)
    assert got["user_data"] is None and got["host_name"] == "win-gi-1"

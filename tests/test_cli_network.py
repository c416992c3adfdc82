"""The network options and --new-instance-id on the command line: what build writes, and the bad input every
command refuses with exit status 2 before anything is built, and (vSphere commands) before any connection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esxi_configdrive.cli import main
from esxi_configdrive.iso import iso_to_tree
from esxi_configdrive.network import network_data

MAC0 = "00:50:56:aa:bb:01"


@pytest.fixture(autouse=True)
def no_vcenter(monkeypatch):
    """No vCenter configured: a vSphere command that got as far as connecting fails on the URL instead."""
    for var in ("GOVC_URL", "GOVC_USERNAME", "GOVC_PASSWORD", "VMWARE_HOST"):
        monkeypatch.delenv(var, raising=False)


def vmdata_file(tmp_path: Path, **obj) -> str:
    path = tmp_path / "vm.json"
    path.write_text(json.dumps({"metadata": {"vm-id": "7c1e4a52", "local-hostname": "db-1"}, **obj}))
    return str(path)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_build_writes_the_static_network_the_options_describe(tmp_path, capsys):
    out = tmp_path / "drive.iso"
    args = ["--ip", "10.1.2.3/24", "--ip", "2001:db8::3/64", "--gateway", "10.1.2.1", "--mac", f"eth0={MAC0}"]
    args += ["--mtu", "9000", "--route", "10.9.0.0/16,via=10.1.2.254", "--dns", "10.1.0.2", "--dns-search", "ex.com"]
    assert main(["build", "--vmdata", vmdata_file(tmp_path), *args, "-o", str(out)]) == 0
    written = json.loads(iso_to_tree(out.read_bytes()).read("openstack/latest/network_data.json"))
    assert written == network_data(
        {
            "interfaces": [
                {
                    "mac": MAC0,
                    "mtu": 9000,
                    "addresses": ["10.1.2.3/24", "2001:db8::3/64"],
                    "gateway4": "10.1.2.1",
                    "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.254"}],
                }
            ],
            "dns": ["10.1.0.2"],
            "dns_search": ["ex.com"],
        }
    )


def test_the_options_replace_the_files_network_data(tmp_path):
    out = tmp_path / "drive.iso"
    nova = {"links": [{"id": "x", "type": "phy", "ethernet_mac_address": "00:50:56:ff:ff:ff"}]}
    path = vmdata_file(tmp_path, network_data=nova)
    assert main(["build", "--vmdata", path, "--dhcp", "--mac", MAC0, "-o", str(out)]) == 0
    written = json.loads(iso_to_tree(out.read_bytes()).read("openstack/latest/network_data.json"))
    assert [link["ethernet_mac_address"] for link in written["links"]] == [MAC0]


BUILD_ERRORS = [
    (["--ip", "10.1.2.3/24"], "mac: eth0: required to build a drive"),
    (["--ip", "10.1.2.3", "--mac", MAC0], "ip: eth0: '10.1.2.3' needs its prefix length"),
    (["--ip", "10.1.2.3/24", "--mac", MAC0, "--gateway", "10.2.0.1"], "gateway: eth0: 10.2.0.1 is outside"),
    (["--ip", "ens192=10.1.2.3/24"], "ip: 'ens192': name a NIC by its place on the VM"),
    (["--dhcp", "--mac", MAC0, "--network-data", "empty"], "network-data: empty (no network configuration)"),
    (["--dns", "10.1.0.2"], "ip: give an interface (--ip or --dhcp)"),
]


@pytest.mark.parametrize("options, line", BUILD_ERRORS, ids=[line.split(":")[0] for _, line in BUILD_ERRORS])
def test_build_refuses_bad_network_options(tmp_path, capsys, options, line):
    out = tmp_path / "drive.iso"
    assert main(["build", "--vmdata", vmdata_file(tmp_path), *options, "-o", str(out)]) == 2
    assert error_line(capsys).startswith(f"esxi-configdrive: error: {line}")
    assert not out.exists()


def test_build_without_a_vm_id_says_it_is_required(tmp_path, capsys):
    path = tmp_path / "vm.json"
    path.write_text(json.dumps({"metadata": {"local-hostname": "db-1"}}))
    assert main(["build", "--vmdata", str(path), "-o", str(tmp_path / "x.iso")]) == 2
    assert error_line(capsys).startswith("esxi-configdrive: error: metadata.vm-id: required")


def test_a_file_section_without_macs_names_the_field_on_build(tmp_path, capsys):
    path = vmdata_file(tmp_path, network={"interfaces": [{"addresses": ["10.1.2.3/24"]}]})
    assert main(["build", "--vmdata", path, "-o", str(tmp_path / "x.iso")]) == 2
    assert error_line(capsys).startswith("esxi-configdrive: error: network.interfaces[0].mac: required")


VSPHERE_ERRORS = [
    (["attach", "web-1", "--ip", "10.1.2.3/24", "--gateway", "10.9.9.9"], "gateway: eth0: 10.9.9.9 is outside"),
    (["attach", "web-1", "--ip", "10.1.2.3/24", "--network-data", "auto"], "network-data: auto (DHCP on every NIC)"),
    (["attach", "web-1", "--dhcp", "--network-data", "empty"], "network-data: empty"),
    (["update", "web-1", "--dns", "10.1.0.2"], "ip: give an interface"),
    (["update", "web-1", "--ip", "10.1.2.3/24", "--network-data", "none"], "network-data: none"),
    (["update", "web-1", "--mtu", "eth0=70", "--ip", "2001:db8::3/64"], "mtu: eth0: IPv6 needs an MTU"),
]


@pytest.mark.parametrize("argv, words", VSPHERE_ERRORS, ids=[" ".join(a[2:4]) for a, _ in VSPHERE_ERRORS])
def test_vsphere_commands_refuse_bad_network_input_before_connecting(tmp_path, capsys, argv, words):
    command, vm, *rest = argv
    extra = ["--vmdata", vmdata_file(tmp_path)] if command == "attach" else []
    assert main([command, vm, *extra, *rest, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is False and out["exit_status"] == 2
    assert words in out["error"] and not out["error"].startswith("url:"), out["error"]


def test_attach_without_a_vm_id_and_update_with_only_a_new_instance_id_get_as_far_as_connecting(tmp_path, capsys):
    path = tmp_path / "vm.json"
    path.write_text(json.dumps({"metadata": {"local-hostname": "db-1"}}))
    assert main(["attach", "web-1", "--vmdata", str(path), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"].startswith("url: ")  # the input was fine
    assert main(["update", "web-1", "--new-instance-id", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"].startswith("url: ")


@pytest.mark.parametrize("flag", ["--ip", "--dns", "--gateway"])
def test_network_options_are_refused_in_batch_mode(tmp_path, capsys, flag):
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"vm": "a", "hostname": "h"}\n')
    assert main(["update", "--batch", str(batch), flag, "10.1.2.3/24", "--json"]) == 2
    assert f"{flag} does not apply with --batch" in json.loads(capsys.readouterr().out)["error"]

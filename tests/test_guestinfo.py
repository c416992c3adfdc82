"""The guestinfo layout (esxi_configdrive/guestinfo.py) and the network section in netplan's form
(network.netplan): pure functions, no I/O. What cloud-init makes of the keys in a booted guest:
tests/guest/test_guest_guestinfo.py."""

from __future__ import annotations

import base64
import email
import gzip
import json
from typing import Any

import pytest

from esxi_configdrive import VmData
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.guestinfo import (
    BASE64,
    GZIP_BASE64,
    NAMES,
    PLAIN,
    decode,
    encode,
    encoding_key,
    guestinfo_keys,
    gzip_bytes,
    key,
)
from esxi_configdrive.network import netplan

MAC = "00:50:56:aa:bb:01"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example"
PASSWORD = "gi-Passw0rd-7"
NETWORK = {
    "interfaces": [{"mac": MAC, "mtu": 1500, "addresses": ["10.1.2.3/24"], "gateway4": "10.1.2.1"}],
    "dns": ["10.1.0.2"],
    "dns_search": ["example.com"],
}


def vmdata(**extra: Any) -> VmData:
    obj = {
        "metadata": {"vm-id": "vm-42", "instance-id": "i-2-24-VM", "local-hostname": "web-1", "public-keys": [KEY]},
        "userdata": "#cloud-config\nruncmd:\n  - echo hi\n",
        "network": NETWORK,
        **extra,
    }
    return VmData.from_dict(obj)


def values(keys: dict[str, str]) -> dict[str, bytes]:
    """Each value decoded as cloud-init decodes it ("" = not set, left out)."""
    return {n: decode(keys[key(n)], keys[encoding_key(n)]) for n in NAMES if keys[key(n)]}


def metadata_of(keys: dict[str, str]) -> dict[str, Any]:
    return json.loads(values(keys)["metadata"])


def test_every_key_is_there_and_unset_ones_are_empty() -> None:
    keys = guestinfo_keys(vmdata())
    assert sorted(keys) == sorted([key(n) for n in NAMES] + [encoding_key(n) for n in NAMES])
    assert keys[key("vendordata")] == keys[encoding_key("vendordata")] == ""  # no vendor data: cleared
    assert values(keys)["userdata"] == b"#cloud-config\nruncmd:\n  - echo hi\n"


def test_metadata_is_what_cloud_init_reads() -> None:
    meta = metadata_of(guestinfo_keys(vmdata(), redact=["userdata"]))
    assert meta == {
        "instance-id": "vm-42",  # the vm-id, as the config drive's uuid: moving transports is no new instance
        "local-hostname": "web-1",
        "public-keys-data": KEY,  # one a line: cloudbase-init reads this form only, cloud-init reads it first
        "network": netplan(NETWORK | {"interfaces": [NETWORK["interfaces"][0] | {"id": "eth0"}]}),
        "redact": ["userdata"],  # without "guestinfo.": cloud-init adds it
    }


def test_netplan_form_of_the_network_section() -> None:
    section = {
        "interfaces": [
            {
                "id": "eth0",
                "mac": MAC,
                "mtu": 9000,
                "addresses": ["10.1.2.3/24", "2001:db8::3/64"],
                "gateway4": "10.1.2.1",
                "gateway6": "2001:db8::1",
                "routes": [{"to": "10.9.0.0/16", "via": "10.1.2.254"}],
            },
            {"id": "eth1", "mac": "00:50:56:aa:bb:02", "dhcp4": True, "slaac": True},
        ],
        "dns": ["10.1.0.2"],
        "dns_search": ["example.com"],
    }
    names = {"addresses": ["10.1.0.2"], "search": ["example.com"]}
    assert netplan(section) == {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": MAC},
                "mtu": 9000,
                "dhcp4": False,
                "dhcp6": False,
                "addresses": ["10.1.2.3/24", "2001:db8::3/64"],
                "routes": [
                    {"to": "0.0.0.0/0", "via": "10.1.2.1"},
                    {"to": "::/0", "via": "2001:db8::1"},
                    {"to": "10.9.0.0/16", "via": "10.1.2.254"},
                ],
                "nameservers": names,
            },
            "eth1": {
                "match": {"macaddress": "00:50:56:aa:bb:02"},
                "dhcp4": True,
                "dhcp6": False,
                "accept-ra": True,
                "nameservers": names,
            },
        },
    }


def test_netplan_needs_every_mac() -> None:
    with pytest.raises(ValidationError, match=r"network\.interfaces\[0\]\.mac"):
        netplan({"interfaces": [{"addresses": ["10.1.2.3/24"]}]})


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (b'{"instance-id":"vm-42"}', PLAIN),  # text cloud-init reads back unchanged
        (b"#cloud-config\n", BASE64),  # cloud-init strips trailing white space from a value
        (b"---", BASE64),  # read as "no value"
        (b"a\x00b", BASE64),  # control characters
        (b"\xff\xfe", BASE64),  # not UTF-8
        (b"#cloud-config\n" + b"# the same line again and again\n" * 40, GZIP_BASE64),  # shorter compressed
    ],
)
def test_each_value_gets_the_shortest_faithful_encoding(raw: bytes, encoding: str) -> None:
    value, chosen = encode(raw)
    assert chosen == encoding
    assert decode(value, chosen) == raw
    assert value.isascii() or chosen == PLAIN


def test_gzip_is_reproducible_and_standard() -> None:
    raw = b"#cloud-config\n" * 50
    packed = gzip_bytes(raw)
    assert packed == gzip_bytes(raw)
    assert gzip.decompress(packed) == raw
    assert packed[4:8] == b"\0\0\0\0"  # mtime 0
    assert guestinfo_keys(vmdata()) == guestinfo_keys(vmdata())


def forms(secret: str) -> list[str]:
    return [secret, base64.b64encode(secret.encode()).decode()]


def test_no_password_unless_asked_for() -> None:
    keys = guestinfo_keys(vmdata(password=PASSWORD))
    decoded = b"".join(values(keys).values())
    assert PASSWORD.encode() not in decoded
    assert not any(form in value for value in keys.values() for form in forms(PASSWORD))
    assert "redact" not in metadata_of(keys)


def test_a_password_asked_for_goes_in_the_vendor_data_which_is_redacted() -> None:
    keys = guestinfo_keys(vmdata(password=PASSWORD), password=True, redact=["userdata"])
    parts = email.message_from_bytes(values(keys)["vendordata"]).get_payload()
    assert any(PASSWORD.encode() in part.get_payload(decode=True) for part in parts)  # the config drive's parts
    assert metadata_of(keys)["redact"] == ["userdata", "vendordata"]
    assert PASSWORD.encode() not in values(keys)["metadata"] + values(keys)["userdata"]


def test_vendor_data_is_the_cloud_init_key_of_the_callers_vendor_data() -> None:
    keys = guestinfo_keys(vmdata(vendor_data={"cloud-init": "#cloud-config\nbootcmd: [true]", "other": 1}))
    assert values(keys)["vendordata"] == b"#cloud-config\nbootcmd: [true]"


def test_redact_names_only_values_that_are_set() -> None:
    keys = guestinfo_keys(vmdata(), redact=["userdata", "vendordata", "userdata"])
    assert metadata_of(keys)["redact"] == ["userdata"]


@pytest.mark.parametrize(
    ("data", "options", "field"),
    [
        (lambda: vmdata(), {"redact": ["guestinfo.userdata"]}, "redact"),
        (lambda: vmdata(vendor_data={"cloud-init": ["#cloud-config"]}), {}, "vendor_data.cloud-init"),
        (lambda: VmData.from_dict({"metadata": {"vm-id": "v"}, "network_data": {"links": []}}), {}, "network_data"),
        (lambda: VmData.from_dict({"metadata": {"local-hostname": "h"}}), {}, "metadata.vm-id"),
    ],
)
def test_what_guestinfo_cannot_carry_is_refused(data: Any, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        guestinfo_keys(data(), **options)
    assert info.value.field == field

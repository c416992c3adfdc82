"""VmData: parsing (JSON, YAML, CloudStack triples), overrides and validation. No I/O beyond tmp files."""

from __future__ import annotations

import base64
import io
import json

import pytest
import sample_data as sd

from esxi_configdrive import build_iso, fields, inputs
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.defaults import DEFAULT_MAX_USERDATA_BYTES
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.fields import check_hostname, check_label, check_public_key
from esxi_configdrive.inputs import read_password_file, read_ssh_key_file, read_userdata_file
from esxi_configdrive.vmdata import ContentChange, VmData
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere.settings import ConnectionSettings


def error_of(fn, *args, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    return info.value


# ---- the documented mapping -------------------------------------------------------------------------------


def test_from_dict_reads_every_part():
    data = VmData.from_dict(sd.sample_dict(vendor_data={"x": 1}, openstack_metadata={"meta": {"role": "web"}}))
    assert data.metadata == sd.METADATA
    assert data.public_keys == [sd.ED25519_KEY, sd.RSA_KEY]
    assert data.userdata == sd.USERDATA
    assert data.password == sd.PASSWORD
    assert data.network_data == sd.NETWORK_DATA
    assert data.vendor_data == {"x": 1}
    assert data.openstack_metadata == {"meta": {"role": "web"}}
    assert data.vm_id == sd.VM_ID and data.hostname == sd.HOSTNAME
    assert data.label == "config-2" and data.password_vendor_data and not data.dated_versions


def test_userdata_base64_gives_raw_bytes():
    raw = bytes(range(256))
    wrapped = base64.encodebytes(raw).decode()  # line-wrapped, as base64(1) writes it
    assert "\n" in wrapped.strip()
    data = VmData.from_dict({"metadata": {"vm-id": "x"}, "userdata_base64": wrapped})
    assert data.userdata == raw


def test_userdata_and_userdata_base64_together_rejected():
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "userdata": "a", "userdata_base64": "YQ=="})
    assert e.field == "userdata_base64"


@pytest.mark.parametrize("bad", ["not base64!", "YQ", "@@@@", "YW Jj\x00", "YQ==YQ=="])
def test_invalid_base64_rejected(bad):
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "userdata_base64": bad})
    assert e.field == "userdata_base64"
    assert "base64" in e.message


def test_public_keys_as_one_string_one_per_line():
    data = VmData.from_dict({"metadata": {"vm-id": "x", "public-keys": f"{sd.ED25519_KEY}\r\n\n{sd.ECDSA_KEY}\n"}})
    assert data.public_keys == [sd.ED25519_KEY, sd.ECDSA_KEY]


def test_integer_metadata_value_becomes_text():
    assert VmData.from_dict({"metadata": {"vm-id": 42}}).metadata == {"vm-id": "42"}


def test_unknown_top_level_key_named():
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "user_data": "typo"})
    assert e.field == "user_data"
    assert "unknown key" in e.message


@pytest.mark.parametrize(
    "obj, field",
    [
        ({"metadata": []}, "metadata"),
        ({"metadata": {"vm-id": "x", "a": 1.5}}, "metadata.a"),
        ({"metadata": {"vm-id": "x", "a": True}}, "metadata.a"),
        ({"metadata": {"vm-id": "x", "a": None}}, "metadata.a"),
        ({"metadata": {"vm-id": "x", "a": ["b"]}}, "metadata.a"),
        ({"metadata": {"vm-id": "x", "public-keys": 5}}, "metadata.public-keys"),
        ({"metadata": {"vm-id": "x", "public-keys": [5]}}, "metadata.public-keys[0]"),
        ({"metadata": {"vm-id": "x"}, "userdata": 5}, "userdata"),
        ({"metadata": {"vm-id": "x"}, "userdata_base64": 5}, "userdata_base64"),
        ({"metadata": {"vm-id": "x"}, "password": 1234}, "password"),
        ({"metadata": {"vm-id": "x"}, "vendor_data": []}, "vendor_data"),
        ({"metadata": {"vm-id": "x"}, "network_data": "x"}, "network_data"),
        ({"metadata": {"vm-id": "x"}, "openstack_metadata": 1}, "openstack_metadata"),
        ({"metadata": {"vm-id": "x"}, "vendor_data": {"a": float("nan")}}, "vendor_data"),
        ({"metadata": {"vm-id": "x"}, "vendor_data": {"a": "\ud800"}}, "vendor_data"),
        ({"metadata": {"vm-id": "x"}, "vendor_data": {1: "a"}}, "vendor_data"),
        ({"metadata": {"vm-id": "x"}, "vendor_data": {"a": b"bytes"}}, "vendor_data"),
    ],
)
def test_wrong_types_name_the_field(obj, field):
    assert error_of(VmData.from_dict, obj).field == field


@pytest.mark.parametrize(
    "data, field",
    [
        (VmData(metadata=[]), "metadata"),  # type: ignore[arg-type]
        (VmData(metadata={"vm-id": 5}), "metadata.vm-id"),  # type: ignore[dict-item]
        (VmData(metadata={"vm-id": "x", "a": 5}), "metadata.a"),  # type: ignore[dict-item]
        (VmData(metadata={"vm-id": "x"}, public_keys=sd.ED25519_KEY), "metadata.public-keys"),  # type: ignore[arg-type]
        (VmData(metadata={"vm-id": "x"}, userdata="text"), "userdata"),  # type: ignore[arg-type]
        (VmData(metadata={"vm-id": "x"}, password=b"pw"), "password"),  # type: ignore[arg-type]
        (VmData(metadata={"vm-id": "x"}, extra_files={"a": "text"}), "extra_files.a"),  # type: ignore[dict-item]
        (VmData(metadata={"vm-id": "x"}, extra_files={"../a": b""}), "extra_files.../a"),
        (VmData(metadata={"vm-id": "x"}, label=5), "label"),  # type: ignore[arg-type]
    ],
)
def test_constructed_with_wrong_types_validate_raises_validation_error(data, field):
    assert error_of(data.validate).field == field


# ---- required vm-id, user data size -----------------------------------------------------------------------


@pytest.mark.parametrize("metadata", [{}, {"instance-id": "i-1"}])
def test_vm_id_may_be_left_out_of_the_data_but_a_drive_needs_it(metadata):
    # the vSphere commands fill in the VM's instance UUID (drive/steps.py content_for_vm); a drive for no VM cannot
    data = VmData.from_dict({"metadata": metadata})
    assert data.vm_id == ""
    e = error_of(build_iso, data)
    assert e.field == "metadata.vm-id"
    assert "required" in e.message and "instance UUID" in e.message


@pytest.mark.parametrize("metadata", [{"vm-id": ""}, {"vm-id": "   "}])
def test_a_blank_vm_id_is_refused(metadata):
    e = error_of(VmData.from_dict, {"metadata": metadata})
    assert e.field == "metadata.vm-id"
    assert "blank" in e.message


@pytest.mark.parametrize("vm_id", ["a\nb", "a\x00b", "x" * 256])
def test_vm_id_one_short_line(vm_id):
    assert error_of(VmData.from_dict, {"metadata": {"vm-id": vm_id}}).field == "metadata.vm-id"


def test_userdata_limit_default_one_mib_after_decoding():
    limit = DEFAULT_MAX_USERDATA_BYTES
    assert limit == 1024 * 1024
    ok = VmData.from_dict({"metadata": {"vm-id": "x"}, "userdata_base64": base64.b64encode(b"a" * limit).decode()})
    assert len(ok.userdata or b"") == limit
    e = error_of(
        VmData.from_dict, {"metadata": {"vm-id": "x"}, "userdata_base64": base64.b64encode(b"a" * (limit + 1)).decode()}
    )
    assert e.field == "userdata"
    assert str(limit) in e.message


def test_userdata_limit_configurable():
    obj = {"metadata": {"vm-id": "x"}, "userdata": "a" * 100}
    assert error_of(VmData.from_dict, obj, max_userdata_bytes=99).field == "userdata"
    assert VmData.from_dict(obj, max_userdata_bytes=100).userdata == b"a" * 100
    big = {"metadata": {"vm-id": "x"}, "userdata": "a" * (DEFAULT_MAX_USERDATA_BYTES + 10)}
    text = json.dumps(big)
    assert error_of(VmData.from_text, text).field == "userdata"
    data = VmData.from_text(text, max_userdata_bytes=2 * DEFAULT_MAX_USERDATA_BYTES)
    assert len(data.userdata or b"") == DEFAULT_MAX_USERDATA_BYTES + 10
    assert error_of(data.validate).field == "userdata"
    data.validate(max_userdata_bytes=2 * DEFAULT_MAX_USERDATA_BYTES)
    again = data.with_overrides(hostname="h", max_userdata_bytes=2 * DEFAULT_MAX_USERDATA_BYTES)
    assert again.hostname == "h"
    assert error_of(data.with_overrides, hostname="h").field == "userdata"


# ---- metadata keys and values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["../x", "a/b", "/etc", "a\x00b", "..", ".", ".hidden", "a..b", "", "a b", "a\\b", "é", "a" * 61, "-x", "x\n"],
)
def test_unsafe_metadata_keys_rejected(key):
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x", key: "v"}})
    # the key is quoted in the message, not made part of the field name (a ":" or newline would garble the line)
    assert e.field == "metadata"
    assert json.dumps(key) in e.message and "key must be" in e.message


@pytest.mark.parametrize("key", ["a", "A.b_c-d", "x" * 60, "9lives", "cloud-domain-id"])
def test_safe_metadata_keys_accepted(key):
    assert VmData.from_dict({"metadata": {"vm-id": "x", key: "v"}}).metadata[key] == "v"


def test_metadata_values_limits():
    big = "x" * (fields.MAX_METADATA_VALUE_BYTES + 1)
    assert error_of(VmData.from_dict, {"metadata": {"vm-id": "x", "a": big}}).field == "metadata.a"
    assert error_of(VmData.from_dict, {"metadata": {"vm-id": "x", "a": "b\x00"}}).field == "metadata.a"
    assert error_of(VmData.from_dict, {"metadata": {"vm-id": "x", "a": "\udcff"}}).field == "metadata.a"
    ok = VmData.from_dict({"metadata": {"vm-id": "x", "a": "multi\nline ünïcødé ✓ 😀"}})
    assert ok.metadata["a"] == "multi\nline ünïcødé ✓ 😀"


# ---- SSH keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sd.KEYS)
def test_real_keys_pass(key):
    check_public_key(key)
    assert VmData.from_dict({"metadata": {"vm-id": "x", "public-keys": [key]}}).public_keys == [key]


@pytest.mark.parametrize(
    "key, words",
    [
        (sd.fake_key("ssh-rsa", body_type="ssh-ed25519"), "says 'ssh-ed25519'"),
        (sd.ED25519_KEY.replace("ssh-ed25519", "ssh-rsa", 1), "says 'ssh-ed25519'"),
        ("ssh-ed25519 !!!notbase64!!! c", "base64"),
        ("ssh-ed25519 AAAA", "base64"),  # 3 bytes: no length field
        ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x04\xff\xfe\xfd\xfc").decode(), "base64"),
        ("ssh-foo " + sd.ED25519_KEY.split()[1], "look like"),
        (sd.ED25519_KEY.split()[1], "look like"),
        ("ssh-ed25519", "look like"),
        ("", "look like"),
        (sd.ED25519_KEY + "\x00", "look like"),
        (sd.ED25519_KEY + " comment\twith tab", "look like"),
        ("-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjE=", "look like"),
    ],
)
def test_bad_keys_rejected(key, words):
    e = error_of(check_public_key, key, "metadata.public-keys[0]")
    assert e.field == "metadata.public-keys[0]"
    assert words in e.message
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x", "public-keys": [sd.ED25519_KEY, key]}})
    assert e.field == "metadata.public-keys[1]"


def test_fake_key_helper_builds_a_valid_blob():
    check_public_key(sd.fake_key("ssh-ed25519", comment="c"))  # the helper itself is sound


# ---- hostnames, labels, passwords, network data -----------------------------------------------------------


@pytest.mark.parametrize("name", ["web-1", "a", "a.b.c", "x" * 63, "web-1.example.org.", "1host", "A-B"])
def test_valid_hostnames(name):
    check_hostname(name)
    assert VmData.from_dict({"metadata": {"vm-id": "x", "local-hostname": name}}).hostname == name


@pytest.mark.parametrize(
    "name", ["", "web\n", "-a", "a-", "a_b", "x" * 64, "a..b", ".a", "é", "a b", "a/b", ".".join(["abcdefgh"] * 29)]
)
def test_invalid_hostnames(name):
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x", "local-hostname": name}})
    assert e.field == "metadata.local-hostname"
    assert "host name" in e.message


@pytest.mark.parametrize("label", ["config-2", "CONFIG-2", "a", "x" * 16, "my label"])
def test_valid_labels(label):
    check_label(label)


@pytest.mark.parametrize("label", ["", " lead", "trail ", "x" * 17, "é", "a\tb", None])
def test_invalid_labels(label):
    assert error_of(check_label, label).field == "label"


SECRET = "Hunter2-S3cret"


@pytest.mark.parametrize("suffix", ["\n", "\r", "\x00", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\uffff"])
def test_password_control_characters_rejected_and_never_quoted(suffix):
    for obj in (
        {"metadata": {"vm-id": "x"}, "password": SECRET + suffix + "tail"},
        [["metadata", "vm-id", "x"], ["password", "vm_password", SECRET + suffix + "tail"]],
    ):
        e = error_of(VmData.from_object, obj)
        assert e.field == "password"
        assert SECRET not in str(e) and "tail" not in str(e)


def test_password_length_limit_and_never_quoted():
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "password": SECRET * 100})
    assert e.field == "password" and SECRET not in str(e)
    ok = VmData.from_dict({"metadata": {"vm-id": "x"}, "password": "é" * fields.MAX_PASSWORD_CHARS})
    assert ok.password == "é" * fields.MAX_PASSWORD_CHARS


def test_errors_elsewhere_do_not_leak_the_password():
    base = {"metadata": {"vm-id": "x"}, "password": SECRET}
    bad_inputs = [
        {**base, "metadata": {"vm-id": "x", "local-hostname": "bad_host"}},
        {**base, "metadata": {"vm-id": " "}},
        {**base, "userdata_base64": "!!"},
        {**base, "vendor_data": {"cloud-init": "#cloud-config\n"}},
        {**base, "network_data": {"links": [{"ethernet_mac_address": "nope"}]}},
        {**base, "surprise": 1},
    ]
    for obj in bad_inputs:
        e = error_of(VmData.from_dict, obj)
        assert SECRET not in str(e), obj
    assert SECRET not in repr(VmData.from_dict(base))


@pytest.mark.parametrize("mac", ["00:50:56:aa:bb:cc", "00:50:56:AA:BB:CC"])
def test_valid_mac(mac):
    obj = {"metadata": {"vm-id": "x"}, "network_data": {"links": [{"id": "eth0", "ethernet_mac_address": mac}]}}
    assert VmData.from_dict(obj).network_data["links"][0]["ethernet_mac_address"] == mac


@pytest.mark.parametrize(
    "network_data, field",
    [
        ({"links": [{"ethernet_mac_address": "00:50:56:aa:bb"}]}, "network_data.links[0].ethernet_mac_address"),
        ({"links": [{}, {"ethernet_mac_address": "00-50-56-aa-bb-cc"}]}, "network_data.links[1].ethernet_mac_address"),
        ({"links": [{"ethernet_mac_address": "zz:50:56:aa:bb:cc"}]}, "network_data.links[0].ethernet_mac_address"),
        ({"links": [{"ethernet_mac_address": 5056}]}, "network_data.links[0].ethernet_mac_address"),
        ({"links": [{"ethernet_mac_address": "00:50:56:aa:bb:cc\n"}]}, "network_data.links[0].ethernet_mac_address"),
        ({"links": {"ethernet_mac_address": "00:50:56:aa:bb:cc"}}, "network_data.links"),
        ({"links": ["eth0"]}, "network_data.links[0]"),
    ],
)
def test_bad_network_data(network_data, field):
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "network_data": network_data})
    assert e.field == field


def test_openstack_metadata_rules():
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "openstack_metadata": {"uuid": "y"}})
    assert e.field == "openstack_metadata.uuid"
    e = error_of(VmData.from_dict, {"metadata": {"vm-id": "x"}, "openstack_metadata": {"random_seed": "!!"}})
    assert e.field == "openstack_metadata.random_seed"
    ok = VmData.from_dict(
        {"metadata": {"vm-id": "x"}, "openstack_metadata": {"random_seed": "AAAA", "launch_index": 0}}
    )
    assert ok.openstack_metadata == {"random_seed": "AAAA", "launch_index": 0}


def test_vendor_data_cloud_init_conflicts_with_password_part_only_when_it_is_on():
    obj = {"metadata": {"vm-id": "x"}, "password": "pw", "vendor_data": {"cloud-init": "#cloud-config\n"}}
    assert error_of(VmData.from_dict, obj).field == "vendor_data.cloud-init"
    data = VmData.from_dict({**obj, "password": None})
    assert data.vendor_data == {"cloud-init": "#cloud-config\n"}
    data.password, data.password_vendor_data = "pw", False
    data.validate()


# ---- CloudStack triples -----------------------------------------------------------------------------------

TRIPLES = [
    ["userdata", "user_data", base64.b64encode(sd.USERDATA).decode()],
    ["metadata", "service-offering", "Small Instance"],
    ["metadata", "availability-zone", "zone-a"],
    ["metadata", "local-hostname", "web-1"],
    ["metadata", "instance-id", "i-2-24-VM"],
    ["metadata", "vm-id", sd.VM_ID],
    ["metadata", "public-keys", f"{sd.ED25519_KEY}\n{sd.RSA_KEY}"],
    ["metadata", "cloud-identifier", "CloudStack-{c0ffee}"],
    ["metadata", "public-ipv4", ""],  # blank: skipped, as CloudStack does
    ["password", "vm_password", sd.PASSWORD],
    ["password", "vm-password-md5checksum", "ignored-derived-from-the-password"],
]


def test_triples_parsed():
    data = VmData.from_object(TRIPLES)
    assert data.userdata == sd.USERDATA
    assert data.password == sd.PASSWORD
    assert data.public_keys == [sd.ED25519_KEY, sd.RSA_KEY]
    assert data.metadata == {
        "service-offering": "Small Instance",
        "availability-zone": "zone-a",
        "local-hostname": "web-1",
        "instance-id": "i-2-24-VM",
        "vm-id": sd.VM_ID,
        "cloud-identifier": "CloudStack-{c0ffee}",
    }


def test_triples_from_json_and_yaml_text(tmp_path):
    path = tmp_path / "vmdata.json"
    path.write_text(json.dumps(TRIPLES))
    assert VmData.from_file(path) == VmData.from_object(TRIPLES)
    yaml_path = tmp_path / "vmdata.yaml"
    yaml_path.write_text("".join(f"- {json.dumps(t)}\n" for t in TRIPLES))
    assert VmData.from_file(yaml_path) == VmData.from_object(TRIPLES)


@pytest.mark.parametrize(
    "bad, field",
    [
        ([["metadata", "vm-id"]], "vmdata[0]"),
        ([["metadata", "vm-id", "x", "extra"]], "vmdata[0]"),
        ([["metadata", "vm-id", 5]], "vmdata[0]"),
        (["metadata/vm-id=x"], "vmdata[0]"),
        ([["metadata", "vm-id", "x"], ["userdata", "user_data", "not base64!"]], "vmdata[1] (userdata)"),
        ([["metadata", "vm-id", "x"], ["userdata", "other", "YQ=="]], "vmdata[1]"),
        ([["metadata", "vm-id", "x"], ["secrets", "a", "b"]], "vmdata[1]"),
        ([["metadata", "vm-id", "x"], ["metadata", "../../etc/passwd", "b"]], "metadata.../../etc/passwd"),
        ([["metadata", "vm-id", "x"], ["metadata", "public-keys", "ssh-rsa garbage"]], "vmdata[1] (public-keys)[0]"),
        ([["metadata", "vm-id", "a\nb"]], "metadata.vm-id"),
    ],
)
def test_bad_triples_rejected(bad, field):
    assert error_of(VmData.from_object, bad).field == field


# ---- YAML, file reading -----------------------------------------------------------------------------------

YAML_TEXT = f"""\
metadata:
  vm-id: "{sd.VM_ID}"
  local-hostname: web-1
  public-keys:
    - {sd.ED25519_KEY}
userdata: |
  #cloud-config
  runcmd: [echo hi]
password: "pa:ss"
network_data:
  links:
    - id: eth0
      ethernet_mac_address: "00:50:56:11:22:33"
"""


def test_yaml_input(tmp_path):
    for name in ("vm.yaml", "vm.yml", "vm.txt"):  # not JSON: YAML whatever the suffix
        path = tmp_path / name
        path.write_text(YAML_TEXT)
        data = VmData.from_file(path)
        assert data.metadata == {"vm-id": sd.VM_ID, "local-hostname": "web-1"}
        assert data.public_keys == [sd.ED25519_KEY]
        assert data.userdata == b"#cloud-config\nruncmd: [echo hi]\n"
        assert data.password == "pa:ss"
        assert data.network_data["links"][0]["ethernet_mac_address"] == "00:50:56:11:22:33"


def test_yaml_unquoted_mac_is_a_sexagesimal_number_and_rejected():
    text = YAML_TEXT.replace('"00:50:56:11:22:33"', "12:34:56:11:22:33")  # YAML 1.1 reads base 60
    e = error_of(VmData.from_text, text)
    assert e.field == "network_data.links[0].ethernet_mac_address"


def test_yaml_alias_bomb_rejected():
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
    bomb += "".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("bcdefgh", "cdefghi"))
    e = error_of(VmData.from_text, bomb)
    assert e.field == "vmdata" and "alias" in e.message
    e = error_of(VmData.from_text, "metadata: &m {vm-id: x}\nother: *m\n", yaml_first=True)
    assert "alias" in e.message


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"metadata": ', "invalid JSON"),
        ("metadata: [unclosed", "neither valid JSON nor YAML"),
        ("- !!python/object/apply:os.system ['true']", "neither valid JSON nor YAML"),
        ('{"metadata": {"vm-id": 1' + "1" * 5000 + "}}", "invalid JSON"),
        ("metadata: {vm-id: 1" + "1" * 5000 + "}", "YAML value"),
        ("metadata: {vm-id: 2001-13-01}", "YAML value"),
        ("[" * 100_000, "nested too deeply"),
        ("42", "expected an object"),
        ("", "expected an object"),
        ("metadata: {vm-id: 2001-01-01}", "must be a string"),
        ("metadata: {vm-id: x}\nvendor_data: {a: !!binary AAAA}", "not plain JSON"),
        ("metadata: {vm-id: x}\nvendor_data: {1: a}", "not plain JSON"),
    ],
)
def test_bad_text_rejected(text, words):
    assert words in str(error_of(VmData.from_text, text))


def test_from_file_errors(tmp_path, monkeypatch):
    assert error_of(VmData.from_file, tmp_path / "missing.json").field == "vmdata"
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"metadata": {"vm-id": "caf\xe9"}}')
    assert "UTF-8" in str(error_of(VmData.from_file, bad))
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"metadata": {"vm-id": "x"}}')
    assert VmData.from_file(bom).vm_id == "x"
    monkeypatch.setattr(inputs, "MAX_VMDATA_FILE_BYTES", 10)  # where VM data files are read
    assert "larger than" in str(error_of(VmData.from_file, bom))


# ---- overrides, helper readers, to_dict -------------------------------------------------------------------


def test_with_overrides_replace_and_validate():
    data = sd.sample_vmdata()
    new = data.with_overrides(userdata=b"#!/bin/sh\n", password="new", public_keys=[sd.ECDSA_KEY], hostname="db-2")
    assert (new.userdata, new.password, new.public_keys, new.hostname) == (
        b"#!/bin/sh\n",
        "new",
        [sd.ECDSA_KEY],
        "db-2",
    )
    assert data == sd.sample_vmdata()  # the original is untouched
    assert data.with_overrides(userdata=b"").userdata is None
    assert error_of(data.with_overrides, hostname="bad_name").field == "metadata.local-hostname"
    assert error_of(data.with_overrides, public_keys=["nope"]).field == "metadata.public-keys[0]"
    assert error_of(data.with_overrides, password="a\nb").field == "password"


def test_read_password_file(tmp_path, monkeypatch):
    path = tmp_path / "pw"
    path.write_text("s3cret: 'x'\n")
    assert read_password_file(str(path)) == "s3cret: 'x'"
    path.write_text("s3cret\r\n")
    assert read_password_file(str(path)) == "s3cret"
    path.write_text(f"{SECRET}\nsecond line\n")
    e = error_of(read_password_file, str(path))
    assert e.field == "password-file" and SECRET not in str(e)
    path.write_text("")
    assert error_of(read_password_file, str(path)).field == "password-file"
    assert error_of(read_password_file, str(tmp_path / "missing")).field == "password-file"
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert read_password_file("-") == "from-stdin"


def test_read_ssh_key_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# authorized_keys style\n\n{sd.ED25519_KEY}\n  {sd.RSA_KEY}  \n")
    assert read_ssh_key_file(str(path)) == [sd.ED25519_KEY, sd.RSA_KEY]
    path.write_text(f"{sd.ED25519_KEY}\nssh-rsa AAAA\n")
    e = error_of(read_ssh_key_file, str(path))
    assert "line 2" in e.field
    path.write_text("# nothing\n")
    assert "no key" in str(error_of(read_ssh_key_file, str(path)))


def test_read_userdata_file_limit(tmp_path):
    path = tmp_path / "ud"
    path.write_bytes(b"\x00\xff" * 50)
    assert read_userdata_file(str(path), 100) == b"\x00\xff" * 50
    assert error_of(read_userdata_file, str(path), 99).field == "userdata-file"


def test_to_dict_round_trip():
    for data in (sd.sample_vmdata(), sd.sample_vmdata(userdata=b"\xff\x00binary", vendor_data={"a": [1, 2.5]})):
        out = data.to_dict()
        assert ("userdata_base64" in out) == (data.userdata == b"\xff\x00binary")
        assert VmData.from_dict(json.loads(json.dumps(out))) == data
    assert "password" not in sd.sample_vmdata().to_dict(include_password=False)


# ---- an update's content change (ContentChange): parsed and checked once, at the edge -------------------------

BAD_CHANGES = [
    ({"hostname": "bad_name"}, {}, "metadata.local-hostname"),
    ({"public_keys": ["nope"]}, {}, "metadata.public-keys[0]"),
    ({"public_keys": "ssh-ed25519 AAAA"}, {}, "metadata.public-keys"),
    ({"password": "a\nb"}, {}, "password"),
    ({"userdata": "text, not bytes"}, {}, "userdata"),
    ({"userdata": b"x" * (DEFAULT_MAX_USERDATA_BYTES + 1)}, {}, "userdata"),
    ({"network": {"interfaces": "eth0"}}, {}, "network.interfaces"),
    ({"colour": "blue"}, {}, "overrides.colour"),
    ({}, {"label": "x" * 17}, "label"),
    ({}, {"dated_versions": "yes"}, "dated_versions"),
    ({}, {"password_vendor_data": 1}, "password_vendor_data"),
    ({}, {"network_data": {}}, "options.network_data"),
]


@pytest.mark.parametrize(("overrides", "options", "field"), BAD_CHANGES, ids=[f for _, _, f in BAD_CHANGES])
def test_a_bad_change_is_refused_naming_its_field(overrides, options, field):
    """The checks VmData.validate gives each field, without a VmData to carry them."""
    assert error_of(ContentChange.parse, overrides, options).field.startswith(field)


def test_a_bad_update_is_refused_before_vsphere_is_touched():
    """The documented update(overrides=..., options=...) is parsed into a ContentChange before the session is
    used: a session that never connected refuses nothing but what reaches it."""
    tool = ConfigDriveController(Session(ConnectionSettings(host="127.0.0.1", port=9)))
    e = error_of(tool.update, "web-1", overrides={"hostname": "bad_name"})
    assert e.field == "metadata.local-hostname"
    assert error_of(tool.update, "web-1", options={"label": ""}).field == "label"
    with pytest.raises(Exception, match="not connected") as reached:  # a good change reaches the session
        tool.update("web-1", overrides={"hostname": "good-name"})
    assert not isinstance(reached.value, ValidationError)


def test_a_content_change_never_shows_its_password():
    change = ContentChange.parse({"password": "s3cret-Passw0rd", "hostname": "web-2"}, {"label": "config-2"})
    assert "s3cret-Passw0rd" not in repr(change) and "s3cret-Passw0rd" not in str(change)
    assert "web-2" in repr(change)  # the rest is shown
    assert change.password == "s3cret-Passw0rd"


def test_a_content_change_applied_as_with_overrides_applies_it():
    """One definition of how a change lands: with_overrides is a ContentChange applied."""
    data = sd.sample_vmdata()
    change = ContentChange.parse(
        {"userdata": b"", "public_keys": [sd.ECDSA_KEY], "hostname": "db-2"}, {"dated_versions": True}, "none"
    )
    new = change.applied_to(data)
    assert (new.userdata, new.public_keys, new.hostname, new.dated_versions) == (None, [sd.ECDSA_KEY], "db-2", True)
    assert (new.network, new.network_data, new.empty_network_data) == (None, {}, False)  # --network-data none
    assert new.label == data.label and data == sd.sample_vmdata()  # the layout kept, the original untouched
    assert new == data.with_overrides(userdata=b"", public_keys=[sd.ECDSA_KEY], hostname="db-2").copy(
        dated_versions=True, network_data={}, network=None
    )
    assert ContentChange(network_data="auto").network_data_auto and not ContentChange().network_data_auto

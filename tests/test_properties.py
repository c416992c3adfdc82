"""Property-based tests (hypothesis): random valid VM data survives build -> read unchanged; random invalid input,
and random damage to an ISO, give a ValidationError (or, for a damaged ISO, a successful read), never a traceback.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import sample_data as sd
import yaml
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st

from esxi_configdrive import ValidationError, VmData, build_iso, read_iso
from esxi_configdrive.fields import MAX_METADATA_VALUE_BYTES, MAX_PASSWORD_CHARS
from esxi_configdrive.iso import read_drive
from esxi_configdrive.layout import build_tree, parse_tree
from esxi_configdrive.transport import Transport
from esxi_configdrive.vmdata import FILE_KEYS, GENERATED_OPENSTACK_KEYS

FAST = settings(deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

# ---- strategies for valid data -----------------------------------------------------------------------------

NO_SURROGATES = st.characters(exclude_categories=("Cs",))
any_text = st.text(NO_SURROGATES, max_size=30)
value_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=120)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
json_object = st.dictionaries(any_text, json_value, max_size=5)

mac = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
link = st.fixed_dictionaries(
    {"id": any_text, "type": st.sampled_from(["phy", "vif"])}, optional={"ethernet_mac_address": mac}
)
network_data = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {"links": st.lists(link, max_size=3)},
        optional={"networks": st.lists(json_object, max_size=2), "services": st.lists(json_object, max_size=2)},
    ),
)

METADATA_KEY_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}"
metadata_key = st.one_of(
    st.sampled_from(["instance-id", "availability-zone", "public-hostname", "service-offering", "cloud-identifier"]),
    st.from_regex(METADATA_KEY_RE, fullmatch=True),
).filter(lambda k: ".." not in k and k not in ("public-keys", "vm-id", "local-hostname"))

hostname_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
hostname = st.lists(hostname_label, min_size=1, max_size=4).map(".".join)
vm_id = st.one_of(
    st.uuids().map(str),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=80).filter(str.strip),
)


@st.composite
def metadata(draw) -> dict[str, str]:
    out = {"vm-id": draw(vm_id)}
    if draw(st.booleans()):
        out["local-hostname"] = draw(hostname)
    out.update(draw(st.dictionaries(metadata_key, value_text, max_size=12)))
    return out


KEY_TYPES = sorted(
    {
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
    }
)
comment = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="".join(map(chr, range(32))) + "\x7f"), max_size=30
)


@st.composite
def public_key(draw) -> str:
    if draw(st.booleans()):
        base = " ".join(draw(st.sampled_from(sd.KEYS)).split()[:2])
    else:
        base = sd.fake_key(draw(st.sampled_from(KEY_TYPES)))
    return f"{base} {draw(comment)}".strip()


password = st.one_of(
    st.sampled_from(['"', "'", "a: b", "#x", "- x", "yes", "~", "null", "0x1F", "{a}", "[b]", "\\", "é😀", " x "]),
    st.text(
        st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters="\ufffe\uffff"),
        min_size=1,
        max_size=64,
    ),
)
userdata = st.one_of(
    st.none(), st.binary(min_size=1, max_size=3000), st.text(NO_SURROGATES, min_size=1).map(str.encode)
)
label = st.from_regex(r"[\x21-\x7e]([\x20-\x7e]{0,14}[\x21-\x7e])?", fullmatch=True)
openstack_metadata = st.dictionaries(
    any_text.filter(lambda k: k not in GENERATED_OPENSTACK_KEYS and k != "random_seed"), json_value, max_size=4
)


@st.composite
def vm_data(draw) -> VmData:
    pw = draw(st.none() | password)
    password_vendor_data = draw(st.booleans())
    vendor = draw(json_object)
    if pw and password_vendor_data:
        vendor.pop("cloud-init", None)
    extra = draw(openstack_metadata)
    if draw(st.booleans()):
        extra["random_seed"] = base64.b64encode(draw(st.binary(max_size=64))).decode()
    return VmData(
        metadata=draw(metadata()),
        public_keys=draw(st.lists(public_key(), max_size=4)),
        userdata=draw(userdata),
        password=pw,
        vendor_data=vendor,
        network_data=draw(network_data),
        openstack_metadata=extra,
        label=draw(label),
        password_vendor_data=password_vendor_data,
        dated_versions=draw(st.booleans()),
        admin_pass=draw(st.booleans()),
    )


def expected_after_read(data: VmData) -> VmData:
    """Without a password the vendor-data and admin_pass switches leave no trace; reading gives the defaults."""
    return data if data.password else data.copy(password_vendor_data=True, admin_pass=True)


# ---- valid data round-trips -------------------------------------------------------------------------------


@FAST
@given(vm_data())
def test_build_read_round_trip(data):
    data.validate()
    iso = build_iso(data)
    assert read_iso(iso) == expected_after_read(data)


@MANY
@given(vm_data())
def test_tree_round_trip_and_password_cloud_config(data):
    tree = build_tree(data)
    assert parse_tree(tree) == expected_after_read(data)
    vendor = json.loads(tree.read("openstack/latest/vendor_data.json") or b"")
    if data.password and data.password_vendor_data:
        (_, cloud_config), (_, boothook) = sd.vendor_parts(vendor["cloud-init"])
        assert yaml.safe_load(cloud_config) == {"password": data.password, "chpasswd": {"expire": False}}
        assert boothook.startswith("#cloud-boothook\n")
        meta = json.loads(tree.read("openstack/latest/meta_data.json") or b"")
        assert meta.get("admin_pass") == (data.password if data.admin_pass else None)
    else:
        assert vendor == data.vendor_data


@st.composite
def seed_data(draw) -> VmData:
    """What a NoCloud seed carries: metadata, keys, user data, and the password or the caller's cloud-init vendor
    data (the password's parts take that key, as on the config drive)."""
    pw = draw(st.none() | password)
    vendor = {} if pw or draw(st.booleans()) else {"cloud-init": draw(any_text)}
    return VmData(
        metadata=draw(metadata()),
        public_keys=draw(st.lists(public_key(), max_size=4)),
        userdata=draw(userdata) or None,
        password=pw,
        vendor_data=vendor,
    )


@FAST
@given(seed_data())
def test_nocloud_seed_round_trip(data):
    iso = build_iso(data, transport=Transport.NOCLOUD)
    assert read_drive(iso) == (Transport.NOCLOUD, data)
    assert build_iso(data, transport=Transport.NOCLOUD) == iso  # reproducible


@MANY
@given(vm_data())
def test_file_format_round_trip(data):
    text = json.dumps(data.to_dict())
    again = VmData.from_text(text)
    assert again == data.copy(label="config-2", password_vendor_data=True, dated_versions=False, admin_pass=True)
    # (PyYAML escapes non-ASCII unless allow_unicode: with it, it writes U+0085 raw and reads it back as a space)
    assert VmData.from_text(yaml.safe_dump(data.to_dict()), yaml_first=True) == again


@MANY
@given(password)
@example("pw\u00a0with nbsp")
@example("tab\u3000ideographic space")
def test_password_cloud_config_parses_back(pw):
    tree = build_tree(sd.minimal_vmdata(password=pw))
    vendor = json.loads(tree.read("openstack/latest/vendor_data.json") or b"")
    assert yaml.safe_load(sd.vendor_parts(vendor["cloud-init"])[0][1])["password"] == pw
    assert (tree.read("cloudstack/password/vm_password.txt") or b"").decode() == pw


# ---- invalid input: ValidationError, nothing else ---------------------------------------------------------


def accepted_or_rejected(fn, *args, **kwargs):
    """Call ``fn``: a result or a ValidationError is fine; any other exception fails the test (it propagates)."""
    try:
        return fn(*args, **kwargs)
    except ValidationError as e:
        assert e.field and isinstance(e.field, str)
        return None


yaml_scalar = st.one_of(
    json_scalar,
    st.floats(),  # nan, inf
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(),
    st.integers(),
    st.text(max_size=30),  # with surrogates
)
anything = st.recursive(
    yaml_scalar,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.none(), st.booleans()), inner, max_size=4)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=15,
)
tricky_key = st.sampled_from(
    ["../x", "a/b", "/etc/passwd", "..", ".", "", "a\x00b", "a\\b", ".hidden", "x\n", "public-keys/../x", "é"]
)


@st.composite
def mutated_file(draw) -> dict:
    """The documented mapping with random fields replaced by random (often wrong) values."""
    obj = sd.sample_dict()
    meta = dict(obj["metadata"])
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.one_of(st.sampled_from(sorted(meta)), metadata_key, tricky_key, st.text(max_size=8)))
        meta[key] = draw(st.one_of(anything, value_text))
    if draw(st.booleans()):
        meta.pop("vm-id", None)
    obj["metadata"] = meta
    for _ in range(draw(st.integers(0, 3))):
        obj[draw(st.sampled_from([*sorted(FILE_KEYS), "bogus"]))] = draw(anything)
    return obj


@MANY
@given(st.text(max_size=300))
@example("metadata: &a {vm-id: x}\nb: *a")
@example('{"metadata": {"vm-id": 1e999}}')
@example("metadata: {vm-id: 2001-02-30}")
@example("vendor_data: !!set {a, b}\nmetadata: {vm-id: x}")
def test_random_text(text):
    accepted_or_rejected(VmData.from_text, text)
    accepted_or_rejected(VmData.from_text, text, yaml_first=True)


@MANY
@given(st.binary(max_size=300))
def test_random_bytes(raw):
    accepted_or_rejected(VmData.from_text, raw)


@MANY
@given(anything)
def test_random_structures(obj):
    accepted_or_rejected(VmData.from_object, obj)


@MANY
@given(mutated_file())
def test_mutated_files(obj):
    data = accepted_or_rejected(VmData.from_object, obj)
    if data is not None and data.vm_id:  # whatever is accepted must also build
        assert read_iso(build_iso(data)) == expected_after_read(data)
    elif data is not None:  # else a vSphere command fills in the VM's instance UUID; a drive for no VM says so
        with pytest.raises(ValidationError) as info:
            build_iso(data)
        assert info.value.field == "metadata.vm-id"
    text = yaml.safe_dump(json.loads(json.dumps(obj, default=str)), allow_unicode=True) if data is None else ""
    accepted_or_rejected(VmData.from_text, text)


@MANY
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12), st.text(max_size=40)), max_size=6))
def test_random_triples(triples):
    accepted_or_rejected(VmData.from_object, [["metadata", "vm-id", "x"], *map(list, triples)])


@MANY
@given(st.one_of(tricky_key, st.text(max_size=70).filter(lambda k: not re.fullmatch(METADATA_KEY_RE, k) or ".." in k)))
def test_unsafe_metadata_keys_always_rejected(key):
    if key in ("vm-id", "public-keys"):
        return
    with pytest.raises(ValidationError) as info:
        VmData.from_dict({"metadata": {"vm-id": "x", key: "v"}})
    assert info.value.field == "metadata" and json.dumps(key) in info.value.message
    with pytest.raises(ValidationError):
        VmData.from_object([["metadata", "vm-id", "x"], ["metadata", key, "v"]])
    with pytest.raises(ValidationError):
        build_tree(VmData(metadata={"vm-id": "x", key: "v"}))


@FAST
@given(st.sampled_from(["metadata", "userdata", "password", "public-key", "vm-id", "label"]), st.integers(1, 1000))
def test_huge_values_rejected(field, extra):
    obj: dict = {"metadata": {"vm-id": "x"}}
    if field == "metadata":
        obj["metadata"]["big"] = "m" * (MAX_METADATA_VALUE_BYTES + extra)
    elif field == "userdata":
        obj["userdata_base64"] = base64.b64encode(b"u" * (1024 * 1024 + extra)).decode()
    elif field == "password":
        obj["password"] = "p" * (MAX_PASSWORD_CHARS + extra)
    elif field == "public-key":
        obj["metadata"]["public-keys"] = [sd.ED25519_KEY + "\n" + "x" * extra]
    elif field == "vm-id":
        obj["metadata"]["vm-id"] = "v" * (255 + extra)
    else:
        with pytest.raises(ValidationError):
            build_iso(sd.minimal_vmdata(), label="l" * (16 + extra))
        return
    with pytest.raises(ValidationError):
        VmData.from_dict(obj)


FIELDS = ["metadata", "public_keys", "userdata", "password", "vendor_data", "network_data", "openstack_metadata"]
FIELDS += ["extra_files", "label"]


@MANY
@given(st.sampled_from(FIELDS), anything)
def test_wrong_types_in_vmdata_objects(field, value):
    data = sd.sample_vmdata(password_vendor_data=False)
    setattr(data, field, value)
    built = accepted_or_rejected(build_iso, data)
    if built is not None:
        assert read_iso(built) is not None


# ---- damaged ISOs -----------------------------------------------------------------------------------------

GOOD_ISO = build_iso(sd.sample_vmdata(dated_versions=True, extra_files={"ec2/latest/meta-data.json": b"{}"}))
SECTOR = 2048
position = st.one_of(st.integers(16 * SECTOR, 60 * SECTOR), st.integers(0, len(GOOD_ISO) - 1))


def read_damaged(image: bytes) -> None:
    data = accepted_or_rejected(read_iso, image)
    if data is not None:
        data.validate(max_userdata_bytes=len(data.userdata or b"") + 1)
        accepted_or_rejected(build_iso, data, max_userdata_bytes=len(data.userdata or b"") + 1)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=12))
def test_flipped_bytes(flips):
    image = bytearray(GOOD_ISO)
    for pos, value in flips:
        image[pos] = value
    read_damaged(bytes(image))


@MANY
@given(st.integers(0, len(GOOD_ISO) - 1))
def test_truncated(cut):
    with pytest.raises(ValidationError):
        read_iso(GOOD_ISO[:cut])


@FAST
@given(st.binary(min_size=0, max_size=4 * SECTOR), st.integers(0, 40))
def test_random_bytes_as_iso(blob, at_sector):
    read_damaged(GOOD_ISO[: at_sector * SECTOR] + blob)


@pytest.mark.parametrize(
    "what, condition",
    [
        ("binary user data", lambda d: d.userdata is not None and not _utf8(d.userdata)),
        ("password in vendor data", lambda d: bool(d.password and d.password_vendor_data and d.vendor_data)),
        ("dated versions and a label", lambda d: d.dated_versions and d.label != "config-2"),
        ("unicode metadata", lambda d: any(not v.isascii() for v in d.metadata.values())),
        (
            "several keys with comments",
            lambda d: len(d.public_keys) > 2 and all(len(k.split()) > 2 for k in d.public_keys),
        ),
        ("many metadata keys", lambda d: len(d.metadata) > 6),
        ("MACs in network data", lambda d: any("ethernet_mac_address" in x for x in d.network_data.get("links", []))),
        (
            "quotes and colons in the password",
            lambda d: (bool(d.password) and '"' in d.password) or ":" in (d.password or ""),
        ),
    ],
)
def test_strategies_reach_the_interesting_cases(what, condition):
    # If the generator never produced these, the round-trip properties would prove little about them.
    find(
        vm_data(), condition, settings=settings(max_examples=500, database=None, deadline=None, phases=[Phase.generate])
    )


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
        return True
    except UnicodeDecodeError:
        return False

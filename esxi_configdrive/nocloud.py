"""VmData -> a NoCloud seed's file tree, and a seed's tree -> VmData (the layout of the nocloud transport).

cloud-init's NoCloud datasource (``sources/DataSourceNoCloud.py``; REFERENCE.md §10) finds a filesystem labelled
``cidata`` (either case) and reads ``meta-data`` (YAML; JSON is YAML), ``user-data``, ``vendor-data`` and
``network-config`` from its root; cloudbase-init's NoCloud service reads the same names. One table,
``SEED_FILES``, says for each file its path, whether a seed needs it, and how it is written and read back, as
cloud-init describes a source's files.

- ``meta-data``: ``instance-id`` (the VM id, as the config drive's ``uuid``: a VM moved between the transports
  stays the same instance to cloud-init), ``local-hostname``, ``public-keys``, and the rest of the VM data's
  metadata under ``metadata`` (CloudStack's keys: its ``instance-id`` is not cloud-init's).
- ``user-data``: the user data as it is; an empty file when there is none (cloud-init's NoCloud requires both
  ``meta-data`` and ``user-data``: a seed without either is "not a valid seed" to it).
- ``vendor-data``: the caller's ``cloud-init`` vendor data, or the password as the config drive carries it to
  cloud-init (layout.openstack_vendor_data: a cloud-config and the boothook that applies a changed password).
- ``network-config``: version 2 from the network section (network.netplan); no file without one, so the guest
  uses DHCP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .defaults import DEFAULT_MAX_USERDATA_BYTES
from .errors import ValidationError
from .layout import PASSWORD_PART_MARKER, FileTree, openstack_vendor_data, parts_of
from .network import netplan, section_of_netplan
from .vmdata import HOSTNAME_KEY, VM_ID_KEY, VmData

LABEL = "cidata"
META_DATA, USER_DATA, VENDOR_DATA, NETWORK_CONFIG = "meta-data", "user-data", "vendor-data", "network-config"
INSTANCE_ID = "instance-id"
PUBLIC_KEYS = "public-keys"
OTHER_METADATA = "metadata"
VENDOR_KEY = "cloud-init"  # the key of the config drive's vendor_data.json cloud-init reads


def is_seed(tree: FileTree) -> bool:
    """A NoCloud seed: labelled cidata (as cloud-init matches it, in either case) with a meta-data file."""
    return tree.label.lower() == LABEL and tree.read(META_DATA) is not None


# ---- VmData -> tree ---------------------------------------------------------------------------------------


def build_tree(data: VmData, *, max_userdata_bytes: int | None = DEFAULT_MAX_USERDATA_BYTES) -> FileTree:
    """The seed for ``data`` (validated first; ``max_userdata_bytes=None``: data that entered already)."""
    data.validate(max_userdata_bytes)
    data.check_drive()
    tree = FileTree(label=LABEL)
    for spec in SEED_FILES:
        content = spec.write(data)
        if content is not None:
            tree.files[spec.path] = content
            if spec.private(data):
                tree.private.add(spec.path)
    for path, content in data.extra_files.items():
        if tree.read(path) is None:
            tree.files[path] = content
    return tree


def meta_data(data: VmData) -> bytes:
    meta: dict[str, Any] = {INSTANCE_ID: data.vm_id}
    if data.hostname:
        meta[HOSTNAME_KEY] = data.hostname
    if data.public_keys:
        meta[PUBLIC_KEYS] = list(data.public_keys)
    others = {k: v for k, v in data.metadata.items() if k not in (VM_ID_KEY, HOSTNAME_KEY)}
    if others:
        meta[OTHER_METADATA] = others
    return _json(meta)


def vendor_data(data: VmData) -> bytes | None:
    value = openstack_vendor_data(data.copy(password_vendor_data=True)).get(VENDOR_KEY)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("vendor_data.cloud-init", "must be a string (cloud-config or MIME) for a NoCloud seed")
    return value.encode("utf-8")


def network_config(data: VmData) -> bytes | None:
    """Version 2 from the network section; a config drive's network data read back (an update moving the VM here)
    becomes its section again when it is in the form this tool writes."""
    section = data.section_for_v2(
        "a NoCloud seed carries the network section only (this network_data has no version 2 form): give "
        "the network section, or --network-data none"
    )
    return _json(netplan(section)) if section is not None else None


# ---- tree -> VmData ---------------------------------------------------------------------------------------


def parse_tree(tree: FileTree) -> VmData:
    """Read a seed's files back into VmData; files this layout would not write are kept in extra_files."""
    data = VmData(extra_files={p: tree.read(p) or b"" for p in tree.all_paths() if p not in SEED_PATHS})
    for spec in SEED_FILES:
        raw = tree.read(spec.path)
        if raw is None and spec.required:
            raise ValidationError(f"iso:{spec.path}", "missing: not a NoCloud seed")
        if raw is not None:
            spec.read(data, raw)
    data.validate(max_userdata_bytes=None)
    return data


def _read_meta_data(data: VmData, raw: bytes) -> None:
    meta = _object(raw, META_DATA)
    others = meta.get(OTHER_METADATA, {})
    if isinstance(others, dict):
        data.metadata.update({str(k): str(v) for k, v in others.items()})
    for key, value in ((VM_ID_KEY, meta.get(INSTANCE_ID)), (HOSTNAME_KEY, meta.get(HOSTNAME_KEY))):
        if isinstance(value, str) and value:
            data.metadata[key] = value
    keys = meta.get(PUBLIC_KEYS)
    if isinstance(keys, str):
        keys = keys.splitlines()
    if isinstance(keys, list):
        data.public_keys = [k.strip() for k in keys if isinstance(k, str) and k.strip()]


def _read_user_data(data: VmData, raw: bytes) -> None:
    data.userdata = raw or None


def _read_vendor_data(data: VmData, raw: bytes) -> None:
    text = raw.decode("utf-8", "replace")
    password = _generated_password(text)
    if password is not None:
        data.password = password
    else:
        data.vendor_data = {VENDOR_KEY: text}


def _generated_password(text: str) -> str | None:
    """The password of the vendor data this layout writes (the config drive's password parts), else None."""
    for content_type, part in parts_of(text):
        if content_type == "text/cloud-config" and PASSWORD_PART_MARKER in part:
            for line in part.splitlines():
                if line.startswith("password: "):
                    value = json.loads(line[len("password: ") :])
                    return value if isinstance(value, str) else None
    return None


def _read_network_config(data: VmData, raw: bytes) -> None:
    section = section_of_netplan(_object(raw, NETWORK_CONFIG))
    if section is None:  # another form (version 1, netplan this tool does not write): kept as it is
        data.extra_files[NETWORK_CONFIG] = raw
    else:
        data.network = section


def _object(raw: bytes, path: str) -> dict[str, Any]:
    from .inputs import load_json_or_yaml

    try:
        obj = load_json_or_yaml(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValidationError):
        raise ValidationError(f"iso:{path}", "is not UTF-8 JSON or YAML") from None
    if not isinstance(obj, dict):
        raise ValidationError(f"iso:{path}", "is not a mapping")
    return obj


def _json(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


@dataclass(frozen=True)
class SeedFile:
    """One file of the seed: its path, whether a seed needs it, how it is written (None: no file) and read back."""

    path: str
    required: bool
    write: Callable[[VmData], bytes | None]
    read: Callable[[VmData, bytes], None]
    private: Callable[[VmData], bool] = lambda data: False  # holds the password: readable by root only


SEED_FILES = (
    SeedFile(META_DATA, True, meta_data, _read_meta_data),
    SeedFile(USER_DATA, True, lambda d: d.userdata or b"", _read_user_data),
    SeedFile(VENDOR_DATA, False, vendor_data, _read_vendor_data, private=lambda d: bool(d.password)),
    SeedFile(NETWORK_CONFIG, False, network_config, _read_network_config),
)
SEED_PATHS = frozenset(spec.path for spec in SEED_FILES)

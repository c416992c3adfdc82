"""VmData: what a config drive says about one VM, parsed from a file or CloudStack's triples, and validated.

Validation happens here, before anything is built or sent to vSphere, and every error names the field it is
about. Error messages never quote the password. The checks of single fields are in fields.py, the reading of
files in inputs.py (import them from there: each name has one home).
"""

from __future__ import annotations

import base64
import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import network as network_section
from .defaults import DEFAULT_LABEL, DEFAULT_MAX_USERDATA_BYTES
from .errors import ValidationError
from .fields import (
    check_hostname,
    check_key_in_file,
    check_label,
    check_metadata_key,
    check_network_data,
    check_password,
    check_public_keys,
    check_tree_path,
    check_userdata,
    decode_base64,
    json_object,
    metadata_value,
    parse_public_keys,
    userdata_from,
)
from .inputs import (
    parse_document,
    read_document,
)

__all__ = ["FILE_KEYS", "GENERATED_OPENSTACK_KEYS", "ContentChange", "VmData"]

# CloudStack's [directory, filename] pairs that are not plain metadata.
USERDATA_DIR, USERDATA_FILE = "userdata", "user_data"
PASSWORD_DIR, PASSWORD_FILE = "password", "vm_password"
PASSWORD_CHECKSUM_FILES = ("vm-password-md5checksum", "vm_password_md5checksum")
METADATA_DIR = "metadata"
PUBLIC_KEYS_KEY = "public-keys"
HOSTNAME_KEY = "local-hostname"
VM_ID_KEY = "vm-id"

# Keys the layout writes into meta_data.json itself; openstack_metadata may not override them.
GENERATED_OPENSTACK_KEYS = frozenset(
    {"uuid", "hostname", "name", "availability_zone", "public_keys", "keys", "admin_pass"}
)
FILE_KEYS = frozenset(
    {
        "metadata",
        "userdata",
        "userdata_base64",
        "password",
        "vendor_data",
        "network_data",
        "network",
        "openstack_metadata",
    }
)
# What --network-data empty|none (build, attach, update; batch lines' "network_data") change in the content;
# file, keep and auto leave it as it is (auto is resolved against the VM's NICs by the vSphere commands).
NETWORK_DATA_FIELDS: dict[str, dict[str, Any]] = {
    "empty": {"network_data": {}, "network": None, "empty_network_data": True},
    "none": {"network_data": {}, "network": None, "empty_network_data": False},
}
VM_ID_REQUIRED = (
    "required: it becomes meta_data.json's uuid (on the vSphere commands it may be left out: the VM's instance "
    "UUID is used)"
)
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f]")


def check_network_choice(choice: str | None, network: dict[str, Any] | None, network_data: dict[str, Any]) -> None:
    """--network-data auto|empty|none against network content given in the same request. auto puts every NIC on
    DHCP (links given in nova's form keep their settings, with the NICs' MACs); empty and none mean no network
    configuration. A `network` section given with any of them, or nova's network data with empty or none, says
    two different things: refused."""
    if choice in ("empty", "none") and (network is not None or network_data):
        given = "the network section" if network is not None else "network_data"
        raise ValidationError("network-data", f"{choice} (no network configuration) contradicts {given}")
    if choice == "auto" and network is not None:
        raise ValidationError(
            "network-data", "auto (DHCP on every NIC) contradicts the network section: give one or the other"
        )


@dataclass
class VmData:
    """Everything that goes on one VM's config drive.

    ``metadata`` holds CloudStack's metadata keys (``vm-id``, ``local-hostname`` …) as strings, without
    ``public-keys``, which are in ``public_keys``. ``vendor_data`` is the caller's own vendor data; the password
    part the builder adds is not in it. ``openstack_metadata`` holds extra ``meta_data.json`` keys (nova's
    ``meta``, ``launch_index`` …), ``extra_files`` files of a foreign drive that the layout does not generate,
    kept so that an update loses nothing. The fields after ``extra_files`` say how the drive is laid out.
    """

    metadata: dict[str, str] = field(default_factory=dict)
    public_keys: list[str] = field(default_factory=list)
    userdata: bytes | None = None
    password: str | None = field(default=None, repr=False)
    vendor_data: dict[str, Any] = field(default_factory=dict)
    network_data: dict[str, Any] = field(default_factory=dict)
    # The `network` section (network.py), in its plain form; written as network_data.json. A drive read back has
    # network_data only.
    network: dict[str, Any] | None = None
    openstack_metadata: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, bytes] = field(default_factory=dict, repr=False)
    label: str = DEFAULT_LABEL
    password_vendor_data: bool = True
    dated_versions: bool = False
    # No network data means no network_data.json, so cloud-init falls back to DHCP on the first NIC; a `{}` file
    # (what CloudStack writes) means "no network config" to cloud-init and leaves the NIC down. Only on request.
    empty_network_data: bool = False
    # meta_data.json's admin_pass is what cloudbase-init (Windows) reads; cloud-init copies meta_data.json into
    # the world-readable /run/cloud-init/instance-data.json, so attach leaves it out for non-Windows guests.
    admin_pass: bool = True

    # ---- construction --------------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES) -> VmData:
        """Parse a VM data file: JSON, YAML, or CloudStack's triple list in either."""
        return cls.from_object(read_document(path), max_userdata_bytes=max_userdata_bytes)

    @classmethod
    def from_text(
        cls, raw: bytes | str, yaml_first: bool = False, *, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES
    ) -> VmData:
        """Parse the content of a VM data file (JSON, or YAML when it is not JSON)."""
        return cls.from_object(parse_document(raw, yaml_first), max_userdata_bytes=max_userdata_bytes)

    @classmethod
    def from_object(cls, obj: Any, *, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES) -> VmData:
        """From a parsed file: a mapping in the documented format, or CloudStack's triple list."""
        if isinstance(obj, list):
            return cls.from_triples(obj, max_userdata_bytes=max_userdata_bytes)
        if isinstance(obj, dict):
            return cls.from_dict(obj, max_userdata_bytes=max_userdata_bytes)
        raise ValidationError("vmdata", "expected an object or a list of [directory, file, content] triples")

    @classmethod
    def from_dict(cls, obj: dict[str, Any], *, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES) -> VmData:
        """From the documented mapping (see docs/format.md)."""
        unknown = sorted(str(k) for k in obj if k not in FILE_KEYS)
        if unknown:
            name = unknown[0] if unknown[0].strip() else repr(unknown[0])  # a blank key still names something
            raise ValidationError(name, f"unknown key (expected one of {', '.join(sorted(FILE_KEYS))})")
        metadata, public_keys = _metadata_from(obj.get("metadata", {}))
        password = obj.get("password")
        if password is not None and not isinstance(password, str):
            raise ValidationError("password", "must be a string")
        data = cls(
            metadata=metadata,
            public_keys=public_keys,
            userdata=userdata_from(obj),
            password=password or None,
            vendor_data=json_object(obj.get("vendor_data", {}), "vendor_data"),
            network_data=json_object(obj.get("network_data", {}), "network_data"),
            network=network_section.normalized(obj["network"]) if obj.get("network") is not None else None,
            openstack_metadata=json_object(obj.get("openstack_metadata", {}), "openstack_metadata"),
        )
        data.validate(max_userdata_bytes)
        return data

    @classmethod
    def from_triples(cls, triples: list[Any], *, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES) -> VmData:
        """From CloudStack's vmData: ``[[directory, filename, content], ...]``; blank content is skipped."""
        data = cls()
        for i, item in enumerate(triples):
            where = f"vmdata[{i}]"
            if not (isinstance(item, (list, tuple)) and len(item) == 3 and all(isinstance(x, str) for x in item)):
                raise ValidationError(where, "expected [directory, filename, content], three strings")
            directory, name, content = item
            if not directory.strip() or not content.strip():
                continue
            if (directory, name) == (USERDATA_DIR, USERDATA_FILE):
                data.userdata = decode_base64(content, f"{where} (userdata)") or None
            elif (directory, name) == (PASSWORD_DIR, PASSWORD_FILE):
                data.password = content
            elif directory == PASSWORD_DIR and name in PASSWORD_CHECKSUM_FILES:
                continue  # derived from the password when the drive is built
            elif directory == METADATA_DIR:
                if name == PUBLIC_KEYS_KEY:
                    data.public_keys = parse_public_keys(content, f"{where} (public-keys)")
                else:
                    data.metadata[name] = content
            else:
                raise ValidationError(where, f"unknown entry {directory}/{name}")
        data.validate(max_userdata_bytes)
        return data

    def to_dict(self, include_password: bool = True) -> dict[str, Any]:
        """The documented file format (user data as text when it is UTF-8, else base64)."""
        meta: dict[str, Any] = dict(self.metadata)
        if self.public_keys:
            meta[PUBLIC_KEYS_KEY] = list(self.public_keys)
        out: dict[str, Any] = {"metadata": meta}
        if self.userdata is not None:
            try:
                out["userdata"] = self.userdata.decode("utf-8")
            except UnicodeDecodeError:
                out["userdata_base64"] = base64.b64encode(self.userdata).decode("ascii")
        if self.password is not None and include_password:
            out["password"] = self.password
        for name in ("vendor_data", "network_data", "network", "openstack_metadata"):
            if getattr(self, name):
                out[name] = copy.deepcopy(getattr(self, name))
        return out

    def copy(self, **changes: Any) -> VmData:
        """A deep copy with some fields replaced."""
        return replace(copy.deepcopy(self), **changes)

    # ---- overrides the CLI offers --------------------------------------------------------------------------

    def with_overrides(
        self,
        *,
        userdata: bytes | None = None,
        password: str | None = None,
        public_keys: list[str] | None = None,
        hostname: str | None = None,
        network: dict[str, Any] | None = None,
        max_userdata_bytes: int | None = DEFAULT_MAX_USERDATA_BYTES,
    ) -> VmData:
        """Apply command-line overrides (each replaces the field it names) and validate the result. ``network``
        (a `network` section) replaces all network data."""
        keys = None if public_keys is None else tuple(public_keys)
        change = ContentChange(userdata, password, keys, hostname, network)
        return change.applied_to(self, max_userdata_bytes)

    # ---- validation ----------------------------------------------------------------------------------------

    @property
    def vm_id(self) -> str:
        return self.metadata.get(VM_ID_KEY, "")

    @property
    def hostname(self) -> str | None:
        return self.metadata.get(HOSTNAME_KEY)

    def validate(self, max_userdata_bytes: int | None = DEFAULT_MAX_USERDATA_BYTES) -> None:
        """Raise ValidationError naming the first bad field; return None when everything is acceptable.

        ``max_userdata_bytes`` is the input limit, applied where data enters (a file read, an API call); ``None``
        checks everything else only, as the layout does with data that has entered already."""
        self._validate_metadata()
        if self.userdata is not None:
            check_userdata(self.userdata, max_userdata_bytes)
        if self.password is not None:
            check_password(self.password)
        check_label(self.label)
        json_object(self.vendor_data, "vendor_data")
        check_network_data(self.network_data)
        if self.network is not None:
            network_section.parse(self.network)
            if self.network_data:
                raise ValidationError(
                    "network", "give either network (plain words) or network_data (nova's form), not both"
                )
        self._validate_openstack_metadata()
        if self.password and self.password_vendor_data and "cloud-init" in self.vendor_data:
            raise ValidationError(
                "vendor_data.cloud-init",
                "conflicts with the password vendor data the drive carries; turn that off "
                "(--no-password-vendor-data) or drop this key",
            )
        if not isinstance(self.extra_files, dict):
            raise ValidationError("extra_files", "must map paths to bytes")
        for path, content in self.extra_files.items():
            check_tree_path(path, f"extra_files.{path}")
            if not isinstance(content, bytes):
                raise ValidationError(f"extra_files.{path}", "must be bytes")

    def section_for_v2(self, refusal: str) -> dict[str, Any] | None:
        """The network section, for a transport that carries it as version 2 (NoCloud, guestinfo): the section,
        else the one a config drive's network data came from (a VM moving off a config drive), else None (the guest
        DHCPs). Network data with no section behind it, or an empty one asked for, is refused with ``refusal``."""
        section = self.network
        if section is None and self.network_data:
            section = network_section.section_of_network_data(self.network_data)
        if section is None and (self.network_data or self.empty_network_data):
            raise ValidationError("network_data", refusal)
        return section

    def check_drive(self) -> None:
        """What a drive needs beyond valid content, which the vSphere commands fill in from the VM: a uuid (the
        VM's instance UUID) and the MAC of every interface of a `network` section (its NICs')."""
        if not self.vm_id:
            raise ValidationError(f"metadata.{VM_ID_KEY}", VM_ID_REQUIRED)
        if self.network is not None:
            network_section.require_macs(self.network)

    def _validate_metadata(self) -> None:
        if not isinstance(self.metadata, dict):
            raise ValidationError("metadata", "must be an object")
        vm_id = self.metadata.get(VM_ID_KEY)
        if isinstance(vm_id, str) and not vm_id.strip():
            raise ValidationError(f"metadata.{VM_ID_KEY}", "is blank: give an id, or leave the key out")
        for key, value in self.metadata.items():
            where = f"metadata.{key}"
            if key == PUBLIC_KEYS_KEY:
                raise ValidationError(where, "public keys belong in public_keys")
            check_metadata_key(key, where)
            if not isinstance(value, str):
                raise ValidationError(where, "must be a string")
            metadata_value(value, where)
        vm_id = self.metadata.get(VM_ID_KEY, "")
        if _CONTROL_CHARS_RE.search(vm_id) or len(vm_id) > 255:
            raise ValidationError(f"metadata.{VM_ID_KEY}", "must be one line of at most 255 characters")
        if self.hostname is not None:
            check_hostname(self.hostname, f"metadata.{HOSTNAME_KEY}")
        check_public_keys(self.public_keys, f"metadata.{PUBLIC_KEYS_KEY}")

    def _validate_openstack_metadata(self) -> None:
        json_object(self.openstack_metadata, "openstack_metadata")
        clash = sorted(GENERATED_OPENSTACK_KEYS & set(self.openstack_metadata))
        if clash:
            raise ValidationError(f"openstack_metadata.{clash[0]}", "is generated from metadata; set it there")
        if "random_seed" in self.openstack_metadata:
            decode_base64(self.openstack_metadata["random_seed"], "openstack_metadata.random_seed")


# What an update's overrides= (the fields a command line, a batch line or a module names) and options= (how the drive
# is laid out) may hold: ContentChange's fields of each kind.
OVERRIDE_FIELDS = ("userdata", "password", "public_keys", "hostname", "network")
LAYOUT_OPTIONS = ("label", "password_vendor_data", "dated_versions")


@dataclass(frozen=True)
class ContentChange:
    """What an update changes in a drive's content; a field left None stays as the drive has it. Made and checked
    once where a request enters (``parse``); applied to the drive's content by ``applied_to``.

    ``userdata`` b"" removes the user data; ``network`` (a `network` section) replaces all network data;
    ``network_data`` is the --network-data choice: empty|none replace the network data (NETWORK_DATA_FIELDS), auto
    is resolved against the VM's NICs by the operation (``network_data_auto``), keep and file change nothing."""

    userdata: bytes | None = None
    password: str | None = field(default=None, repr=False)
    public_keys: tuple[str, ...] | None = None
    hostname: str | None = None
    network: dict[str, Any] | None = None
    label: str | None = None
    password_vendor_data: bool | None = None
    dated_versions: bool | None = None
    network_data: str | None = None

    @classmethod
    def parse(
        cls,
        overrides: Mapping[str, Any],
        options: Mapping[str, Any],
        network_data: str | None = None,
        max_userdata_bytes: int | None = DEFAULT_MAX_USERDATA_BYTES,
    ) -> ContentChange:
        """From an edge's ``overrides`` and ``options`` (each field checked, errors naming it as VmData's do)."""
        for given, known, kind in ((overrides, OVERRIDE_FIELDS, "overrides"), (options, LAYOUT_OPTIONS, "options")):
            unknown = sorted(str(key) for key in given if key not in known)
            if unknown:
                raise ValidationError(f"{kind}.{unknown[0]}", f"unknown field (expected one of {', '.join(known)})")
        keys = overrides.get("public_keys")
        change = cls(
            **{key: overrides.get(key) for key in OVERRIDE_FIELDS if key != "public_keys"},
            public_keys=tuple(keys) if isinstance(keys, list) else keys,  # anything else: refused by check
            **{key: options.get(key) for key in LAYOUT_OPTIONS},
            network_data=network_data,
        )
        change.check(max_userdata_bytes)
        return change

    def check(self, max_userdata_bytes: int | None = DEFAULT_MAX_USERDATA_BYTES) -> None:
        """Each field given, with the checks VmData.validate gives it (fields.py's), named as there."""
        if self.hostname is not None:
            check_hostname(self.hostname, f"metadata.{HOSTNAME_KEY}")
        if self.public_keys is not None:
            check_public_keys(self.public_keys, f"metadata.{PUBLIC_KEYS_KEY}")
        if self.userdata is not None:
            check_userdata(self.userdata, max_userdata_bytes)
        if self.password is not None:
            check_password(self.password)
        if self.network is not None:
            network_section.parse(self.network)
        if self.label is not None:
            check_label(self.label)
        for name in ("password_vendor_data", "dated_versions"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ValidationError(name, "must be true or false")

    @property
    def network_data_auto(self) -> bool:
        """--network-data auto: every NIC on DHCP, resolved against the VM's NICs when the drive is made."""
        return self.network_data == "auto"

    def applied_to(self, data: VmData, max_userdata_bytes: int | None = None) -> VmData:
        """A copy of ``data`` with the change made, validated (``max_userdata_bytes``: None for data that has
        entered already). The layout first, then the network-data choice, then the fields (a `network` section
        replaces the network data the choice left)."""
        layout = {name: getattr(self, name) for name in LAYOUT_OPTIONS if getattr(self, name) is not None}
        new = data.copy(**layout, **NETWORK_DATA_FIELDS.get(self.network_data or "", {}))
        if self.userdata is not None:
            new.userdata = self.userdata or None
        if self.password is not None:
            new.password = self.password
        if self.public_keys is not None:
            new.public_keys = list(self.public_keys)
        if self.hostname is not None:
            new.metadata[HOSTNAME_KEY] = self.hostname
        if self.network is not None:
            new.network, new.network_data, new.empty_network_data = copy.deepcopy(self.network), {}, False
        new.validate(max_userdata_bytes)
        return new


def _metadata_from(raw: Any) -> tuple[dict[str, str], list[str]]:
    """The file's ``metadata`` object: CloudStack's keys as strings, and ``public-keys`` apart."""
    if not isinstance(raw, dict):
        raise ValidationError("metadata", "must be an object")
    metadata: dict[str, str] = {}
    public_keys: list[str] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValidationError("metadata", f"key {key!r} is not a string")
        if key == PUBLIC_KEYS_KEY:
            public_keys = parse_public_keys(value, f"metadata.{key}")
        else:
            check_key_in_file(key)
            metadata[key] = metadata_value(value, f"metadata.{key}")
    return metadata, public_keys

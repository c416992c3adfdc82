"""VmData -> the drive's file tree (CloudStack + OpenStack), and a file tree -> VmData.

The tree is a plain mapping of paths to bytes plus hard links, so it can be built, compared and tested without
writing an ISO. CloudStack's own builder (ConfigDriveBuilder.java) is the model for the cloudstack/ tree and for
how metadata maps into openstack/latest/meta_data.json; nova's is the model for admin_pass and dated folders.
"""

from __future__ import annotations

import base64
import email
import email.message
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .defaults import DEFAULT_MAX_USERDATA_BYTES
from .errors import ValidationError
from .network import network_data as network_data_of_section
from .vmdata import GENERATED_OPENSTACK_KEYS, HOSTNAME_KEY, PUBLIC_KEYS_KEY, VM_ID_KEY, VmData

CLOUDSTACK = "cloudstack"
METADATA_DIR = f"{CLOUDSTACK}/metadata"
USERDATA_PATH = f"{CLOUDSTACK}/userdata/user_data.txt"
PASSWORD_PATH = f"{CLOUDSTACK}/password/vm_password.txt"
# The server writes the hyphenated name, CloudStack's Windows script reads the underscored one: carry both.
CHECKSUM_PATH = f"{CLOUDSTACK}/password/vm-password-md5checksum.txt"
CHECKSUM_ALIAS = f"{CLOUDSTACK}/password/vm_password_md5checksum.txt"

OPENSTACK = "openstack"
LATEST = f"{OPENSTACK}/latest"
META_DATA = "meta_data.json"
USER_DATA = "user_data"
VENDOR_DATA = "vendor_data.json"
NETWORK_DATA = "network_data.json"

# nova's dated folders (cloud-init's OS_VERSIONS).
DATED_VERSIONS = (
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
)
_DATED_RE = re.compile(r"^openstack/(\d{4}-\d{2}-\d{2})/")
PUBLIC_HOSTNAME_KEY = "public-hostname"

# CloudStack's openStackFileMapping: metadata key -> meta_data.json key.
OPENSTACK_MAPPING = {
    "availability-zone": "availability_zone",
    HOSTNAME_KEY: "hostname",
    VM_ID_KEY: "uuid",
    PUBLIC_HOSTNAME_KEY: "name",
}

# Marks the cloud-config part this tool generates from the password, so that reading a drive back can tell it
# from vendor data the caller supplied.
PASSWORD_PART_MARKER = "# esxi-configdrive: password"


@dataclass
class FileTree:
    """The drive's content: ``files`` maps each path to its bytes; ``links`` maps a hard-link path to the
    path in ``files`` whose data it shares."""

    files: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    label: str = "config-2"
    # Files that hold the password: readable by root only where the drive is mounted with Rock Ridge modes.
    private: set[str] = field(default_factory=set)

    def read(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        target = self.links.get(path)
        return self.files.get(target) if target else None

    def all_paths(self) -> list[str]:
        return sorted([*self.files, *self.links])

    def digest(self) -> str:
        """SHA-256 over the label, every path and its content: equal digests mean equal drives."""
        h = hashlib.sha256()
        h.update(b"label\0" + self.label.encode() + b"\0")
        for path in self.all_paths():
            content = self.read(path) or b""
            h.update(path.encode("utf-8") + b"\0" + hashlib.sha256(content).digest())
        return h.hexdigest()


# ---- VmData -> tree ---------------------------------------------------------------------------------------


def build_tree(data: VmData, *, max_userdata_bytes: int | None = DEFAULT_MAX_USERDATA_BYTES) -> FileTree:
    """Lay out the drive for ``data`` (validated first; ``max_userdata_bytes=None``: data that entered already)."""
    data.validate(max_userdata_bytes)
    data.check_drive()
    tree = FileTree(label=data.label)
    _add_cloudstack_tree(tree, data)
    _add_openstack_tree(tree, data)
    for path, content in data.extra_files.items():
        if tree.read(path) is None:
            tree.files[path] = content
    return tree


def _add_cloudstack_tree(tree: FileTree, data: VmData) -> None:
    for key, value in data.metadata.items():
        tree.files[f"{METADATA_DIR}/{key}.txt"] = value.encode("utf-8")
    if data.public_keys:
        tree.files[f"{METADATA_DIR}/{PUBLIC_KEYS_KEY}.txt"] = ("\n".join(data.public_keys) + "\n").encode()
    if data.userdata:
        tree.files[USERDATA_PATH] = data.userdata
    if data.password:
        tree.files[PASSWORD_PATH] = data.password.encode("utf-8")
        tree.files[CHECKSUM_PATH] = password_md5_checksum(data.password).encode("ascii")
        tree.links[CHECKSUM_ALIAS] = CHECKSUM_PATH
        tree.private |= {PASSWORD_PATH, CHECKSUM_PATH}


def _add_openstack_tree(tree: FileTree, data: VmData) -> None:
    written = []
    for spec in OPENSTACK_FILES:
        content = spec.write(data)
        if content is None:
            continue
        written.append(spec)
        tree.files[f"{LATEST}/{spec.name}"] = _json_bytes(content)
        if spec.private(data):
            tree.private.add(f"{LATEST}/{spec.name}")
    if data.userdata:
        tree.links[f"{LATEST}/{USER_DATA}"] = USERDATA_PATH  # a hard link, as CloudStack's `ln`
    if data.dated_versions:
        for version in DATED_VERSIONS:
            for spec in written:
                if version >= spec.since:
                    tree.links[f"{OPENSTACK}/{version}/{spec.name}"] = f"{LATEST}/{spec.name}"
            if data.userdata:
                tree.links[f"{OPENSTACK}/{version}/{USER_DATA}"] = USERDATA_PATH


def openstack_meta_data(data: VmData) -> dict[str, Any]:
    """meta_data.json as CloudStack maps its metadata, plus nova's admin_pass for cloudbase-init."""
    meta: dict[str, Any] = {}
    for key, os_key in OPENSTACK_MAPPING.items():
        if data.metadata.get(key):
            meta[os_key] = data.metadata[key]
    if "name" not in meta and data.hostname:
        meta["name"] = data.hostname  # glean (and nova's own drives) take the host name from `name`
    if data.public_keys:
        names = public_key_names(data.public_keys)
        meta["public_keys"] = dict(zip(names, data.public_keys))
        meta["keys"] = [{"type": "ssh", "name": n, "data": k} for n, k in zip(names, data.public_keys)]
    if data.password and data.admin_pass:
        meta["admin_pass"] = data.password
    meta.update(data.openstack_metadata)
    return meta


def public_key_names(keys: list[str]) -> list[str]:
    """Each key's name is its comment, else ``key``; repeated names get ``-2``, ``-3`` … so none is lost."""
    names: list[str] = []
    for key in keys:
        parts = key.split(None, 2)
        base = parts[2].strip() if len(parts) == 3 and parts[2].strip() else "key"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def openstack_vendor_data(data: VmData) -> dict[str, Any]:
    """The caller's vendor data, plus the password for cloud-init (which ignores CloudStack's files): the
    cloud-config CloudStack 4.20 writes, and a boothook that makes a changed password apply at the next boot, as
    one MIME multipart message. (A JSON list of the two parts, which cloud-init 22.4 takes, makes cloud-init 24.4
    and later fail in init-local: its ``_should_wait_via_user_data`` calls ``strip()`` on the value; seen booting
    Debian 13's 25.1.4 in tests/guest.)"""
    vendor = dict(data.vendor_data)
    if data.password and data.password_vendor_data:
        vendor["cloud-init"] = multipart(
            [
                ("text/cloud-config", password_cloud_config(data.password)),
                ("text/cloud-boothook", password_reset_boothook(data.vm_id, data.password)),
            ]
        )
    return vendor


def multipart(parts: list[tuple[str, str]]) -> str:
    """A MIME multipart/mixed message of text parts, as cloud-init reads user and vendor data (and as its own
    ``make-mime`` writes them: UTF-8, base64, so a password outside ASCII reaches the handlers unchanged: an 8-bit
    part would be re-encoded by Python's email parser). Reproducible: the boundary is a digest of the parts."""
    boundary = "esxi-configdrive-" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
    lines = [f'Content-Type: multipart/mixed; boundary="{boundary}"', "MIME-Version: 1.0", ""]
    for content_type, text in parts:
        body = base64.encodebytes(text.encode("utf-8")).decode("ascii").rstrip("\n")
        lines += [f"--{boundary}", f'Content-Type: {content_type}; charset="utf-8"', "MIME-Version: 1.0",
                  "Content-Transfer-Encoding: base64", "", body]  # fmt: skip
    lines += [f"--{boundary}--", ""]
    return "\n".join(lines)


# cloud-init runs set_passwords once per instance, so a reset drive (same instance id, new password) would be
# ignored. A boothook runs at every boot, before that module: when the drive's password differs from the one it
# saw last (it keeps a digest, not the password, in a root-only file), it removes set_passwords' once-per-instance
# marker so cloud-init applies the password again. A password changed inside the guest is left alone until the
# drive's password changes. Verified by booting Debian's cloud-init 22.4 (tests/guest).
_RESET_HOOK = """#cloud-boothook
#!/bin/sh
{marker}
# cloud-init applies the password above once per instance. When this drive's password differs from the one
# last applied (a digest is kept, not the password), let cloud-init's set_passwords run again at this boot.
f=/var/lib/cloud/instance/esxi-configdrive-password
[ "$(cat "$f" 2>/dev/null)" = "{token}" ] && exit 0
[ -f "$f" ] && rm -f /var/lib/cloud/instance/sem/config_set_passwords
umask 077
echo "{token}" >"$f"
"""
PASSWORD_RESET_MARKER = "# esxi-configdrive: password reset"


def password_reset_boothook(vm_id: str, password: str) -> str:
    return _RESET_HOOK.format(marker=PASSWORD_RESET_MARKER, token=password_token(vm_id, password))


def password_token(vm_id: str, password: str) -> str:
    """Tells one drive password from another without revealing it; deterministic, so drives stay reproducible.
    (The drive holds the password itself; the digest only keeps it out of the guest's state file.)"""
    return hashlib.sha256(f"esxi-configdrive:{vm_id}:{password}".encode()).hexdigest()[:32]


def password_cloud_config(password: str) -> str:
    """CloudStack 4.20's vendor data form, with the password quoted so any printable password stays YAML."""
    quoted = json.dumps(password, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar
    return f"#cloud-config\n{PASSWORD_PART_MARKER}\npassword: {quoted}\nchpasswd:\n  expire: False\n"


def password_md5_checksum(password: str) -> str:
    """What CloudStack's Windows script checks: MD5 as lower-case hex without zero padding (Java BigInteger)."""
    return format(int.from_bytes(hashlib.md5(password.encode("utf-8")).digest(), "big"), "x")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def is_config_drive(tree: FileTree) -> bool:
    """A config drive: it has the meta_data.json every reader needs (the label may be the caller's own)."""
    return tree.read(f"{LATEST}/{META_DATA}") is not None


# ---- tree -> VmData ---------------------------------------------------------------------------------------


def parse_tree(tree: FileTree) -> VmData:
    """Read a drive's files back into VmData; files the layout would not generate are kept in extra_files."""
    data = VmData(label=tree.label)
    _read_cloudstack_tree(tree, data)
    for spec in OPENSTACK_FILES:
        path = f"{LATEST}/{spec.name}"
        spec.read(data, _load_json_file(tree, path, required=spec.required), tree.read(path) is not None)
    data.dated_versions = any(_DATED_RE.match(p) for p in tree.all_paths())
    data.validate(max_userdata_bytes=None)  # reading is not the place to enforce the input limit
    generated = set(build_tree(data, max_userdata_bytes=None).all_paths())
    data.extra_files = {p: tree.read(p) or b"" for p in tree.all_paths() if p not in generated}
    return data


def _read_cloudstack_tree(tree: FileTree, data: VmData) -> None:
    prefix = f"{METADATA_DIR}/"
    for path in sorted(tree.all_paths()):
        if path.startswith(prefix) and path.endswith(".txt") and "/" not in path[len(prefix) :]:
            key = path[len(prefix) : -len(".txt")]
            text = _utf8(tree.read(path) or b"", path)
            if key == PUBLIC_KEYS_KEY:
                data.public_keys = [line.strip() for line in text.split("\n") if line.strip()]
            else:
                data.metadata[key] = text
    data.userdata = tree.read(USERDATA_PATH) or tree.read(f"{LATEST}/{USER_DATA}") or None
    password = tree.read(PASSWORD_PATH)
    if password is not None:
        data.password = _utf8(password, PASSWORD_PATH) or None


def _read_meta_data(data: VmData, meta: dict[str, Any], present: bool) -> None:
    # A drive made by nova (or one missing the CloudStack tree) still carries the mapped keys in meta_data.json.
    for key, os_key in OPENSTACK_MAPPING.items():
        if key not in data.metadata and isinstance(meta.get(os_key), str) and meta[os_key]:
            if key == PUBLIC_HOSTNAME_KEY and meta[os_key] == data.hostname:
                continue  # the host name, repeated as `name` for glean: no public-hostname was given
            data.metadata[key] = meta[os_key]
    if not data.public_keys:
        keys = meta.get("public_keys")
        if isinstance(keys, dict):
            data.public_keys = [k.strip() for k in keys.values() if isinstance(k, str) and k.strip()]
    if data.password is None and isinstance(meta.get("admin_pass"), str):
        data.password = meta["admin_pass"] or None
    data.admin_pass = "admin_pass" in meta or not data.password
    data.openstack_metadata = {k: v for k, v in meta.items() if k not in GENERATED_OPENSTACK_KEYS}


def _read_vendor_data(data: VmData, vendor: dict[str, Any], present: bool) -> None:
    data.password_vendor_data = _is_generated_password_part(vendor.get("cloud-init"), data.password)
    if data.password_vendor_data:
        del vendor["cloud-init"]
    elif not data.password:
        data.password_vendor_data = True  # the default, for when a password is added later
    data.vendor_data = vendor


def _network_data_to_write(data: VmData) -> dict[str, Any] | None:
    if data.network is not None:
        return network_data_of_section(data.network)
    return data.network_data if data.network_data or data.empty_network_data else None


def _read_network_data(data: VmData, network: dict[str, Any], present: bool) -> None:
    data.network_data = network
    data.empty_network_data = present and not network


@dataclass(frozen=True)
class OpenStackFile:
    """One JSON file of ``openstack/<version>/``: how it is written from VmData and read back into it (cloud-init's
    reader describes the same files as one table, ``datafiles()`` in ``sources/helpers/openstack.py``)."""

    name: str
    since: str  # the first of nova's dated versions that has the file
    required: bool  # a drive without it is no config drive
    write: Callable[[VmData], dict[str, Any] | None]  # the object to write; None: no file
    read: Callable[[VmData, dict[str, Any], bool], None]  # the parsed object ({} if absent), and whether present
    private: Callable[[VmData], bool] = lambda data: False  # holds the password: readable by root only


# Read in this order: meta_data.json may supply the password that vendor_data.json is compared with.
OPENSTACK_FILES = (
    OpenStackFile(
        META_DATA, "2012-08-10", True, openstack_meta_data, _read_meta_data,
        private=lambda d: bool(d.password and d.admin_pass),
    ),
    OpenStackFile(
        VENDOR_DATA, "2013-10-17", False, openstack_vendor_data, _read_vendor_data,
        private=lambda d: bool(d.password and d.password_vendor_data),
    ),
    OpenStackFile(NETWORK_DATA, "2015-10-15", False, _network_data_to_write, _read_network_data),
)  # fmt: skip


def _is_generated_password_part(part: Any, password: str | None) -> bool:
    if not password:
        return False
    if isinstance(part, list):  # written by 0.1.0 (cloud-init 24.4 and later fail on it)
        return (
            len(part) == 2
            and all(isinstance(p, str) for p in part)
            and PASSWORD_PART_MARKER in part[0]
            and PASSWORD_RESET_MARKER in part[1]
        )
    if not isinstance(part, str):
        return False
    texts = [text for _, text in parts_of(part)]
    if len(texts) == 2 and PASSWORD_PART_MARKER in texts[0] and PASSWORD_RESET_MARKER in texts[1]:
        return True  # the multipart message this layout writes
    if PASSWORD_PART_MARKER in part:
        return True  # the single cloud-config part of earlier versions
    # CloudStack 4.20 writes the same thing unquoted and without our marker.
    return part.rstrip("\n") == f"#cloud-config\npassword: {password}\nchpasswd:\n  expire: False"


def parts_of(message: str) -> list[tuple[str, str]]:
    """The (content type, text) parts of a MIME multipart message ([] for anything else)."""
    if not message.lower().startswith("content-type: multipart/"):
        return []
    parsed = email.message_from_string(message)
    parts = parsed.get_payload() if parsed.is_multipart() else []
    if not isinstance(parts, list):
        return []
    out = []
    for p in parts:
        if not isinstance(p, email.message.Message):
            return []
        payload = p.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return []
        out.append((p.get_content_type(), payload.decode("utf-8", "replace")))
    return out


def _load_json_file(tree: FileTree, path: str, required: bool = False) -> dict[str, Any]:
    raw = tree.read(path)
    if raw is None:
        if required:
            raise ValidationError(f"iso:{path}", "missing: not a config drive")
        return {}
    try:
        obj = json.loads(_utf8(raw, path))
    except (json.JSONDecodeError, RecursionError):
        raise ValidationError(f"iso:{path}", "is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ValidationError(f"iso:{path}", "is not a JSON object")
    return obj


def _utf8(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"iso:{path}", "is not UTF-8 text") from None


# ---- network data from the VM's NICs ----------------------------------------------------------------------


def network_data_for_macs(macs: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """network_data.json whose links carry the VM's real MAC addresses (a MAC no NIC has makes cloud-init fail).

    Links the caller gave keep their settings and get the NICs' MACs in order; without any, each NIC gets a
    link ``ethN`` and a DHCP network, as nova writes for DHCP networks.
    """
    base = json.loads(json.dumps(base or {}))
    given = base.get("links") or []
    links: list[dict[str, Any]] = []
    for i, mac in enumerate(macs):
        link = dict(given[i]) if i < len(given) and isinstance(given[i], dict) else {"id": f"eth{i}", "type": "phy"}
        link["ethernet_mac_address"] = mac.lower()
        links.append(link)
    base["links"] = links
    if not base.get("networks"):
        base["networks"] = [
            {"id": f"network{i}", "link": link.get("id", f"eth{i}"), "type": "ipv4_dhcp"}
            for i, link in enumerate(links)
        ]
    else:
        ids = {link.get("id") for link in links}
        base["networks"] = [n for n in base["networks"] if not isinstance(n, dict) or n.get("link") in ids]
    return base

"""VmData: what a config drive says about one VM, parsed from a file or CloudStack's triples, and validated.

Validation happens here, before anything is built or sent to vSphere, and every error names the field it is
about. Error messages never quote the password.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_LABEL = "config-2"
DEFAULT_MAX_USERDATA_BYTES = 1024 * 1024  # CloudStack's POST limit, after decoding
MAX_VMDATA_FILE_BYTES = 16 * 1024 * 1024  # base64 of the largest user data, plus room
MAX_METADATA_VALUE_BYTES = 64 * 1024
MAX_PASSWORD_CHARS = 512

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
        "openstack_metadata",
    }
)

_METADATA_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")
_HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_SSH_KEY_TYPES = frozenset(
    {
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f]")
# A password also goes into YAML (the vendor data cloud-config): no C1 controls, no Unicode line breaks, nothing
# YAML counts as non-printable, so that it parses back to the same string.
_PASSWORD_BAD_CHARS_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")


class ValidationError(ValueError):
    """Bad input. ``field`` names where it is (``metadata.vm-id``, ``userdata``, ``vmdata[2]`` …)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass
class VmData:
    """Everything that goes on one VM's config drive.

    ``metadata`` holds CloudStack's metadata keys (``vm-id``, ``local-hostname`` …) as strings, without
    ``public-keys``, which are in ``public_keys``. ``vendor_data`` is the caller's own vendor data; the password
    part the builder adds is not in it. ``openstack_metadata`` holds extra ``meta_data.json`` keys (nova's
    ``meta``, ``launch_index`` …), ``extra_files`` files of a foreign drive that the layout does not generate,
    kept so that an update loses nothing.
    """

    metadata: dict[str, str] = field(default_factory=dict)
    public_keys: list[str] = field(default_factory=list)
    userdata: bytes | None = None
    password: str | None = field(default=None, repr=False)
    vendor_data: dict[str, Any] = field(default_factory=dict)
    network_data: dict[str, Any] = field(default_factory=dict)
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
        path = Path(path)
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_VMDATA_FILE_BYTES + 1)
        except OSError as e:
            raise ValidationError("vmdata", f"cannot read {path}: {e.strerror or e}") from None
        if len(raw) > MAX_VMDATA_FILE_BYTES:
            raise ValidationError("vmdata", f"file larger than {MAX_VMDATA_FILE_BYTES} bytes")
        yaml_first = path.suffix.lower() in (".yaml", ".yml")
        return cls.from_text(raw, yaml_first=yaml_first, max_userdata_bytes=max_userdata_bytes)

    @classmethod
    def from_text(
        cls, raw: bytes | str, yaml_first: bool = False, *, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES
    ) -> VmData:
        """Parse the content of a VM data file (JSON, or YAML when it is not JSON)."""
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                raise ValidationError("vmdata", f"not UTF-8 text (byte {e.start})") from None
        else:
            text = raw
        obj = _load_yaml(text) if yaml_first else _load_json_or_yaml(text)
        return cls.from_object(obj, max_userdata_bytes=max_userdata_bytes)

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
            field = unknown[0] if unknown[0].strip() else repr(unknown[0])  # a blank key still names something
            raise ValidationError(field, f"unknown key (expected one of {', '.join(sorted(FILE_KEYS))})")
        raw_meta = obj.get("metadata", {})
        if not isinstance(raw_meta, dict):
            raise ValidationError("metadata", "must be an object")
        metadata: dict[str, str] = {}
        public_keys: list[str] = []
        for key, value in raw_meta.items():
            if not isinstance(key, str):
                raise ValidationError("metadata", f"key {key!r} is not a string")
            if key == PUBLIC_KEYS_KEY:
                public_keys = _parse_public_keys(value, f"metadata.{key}")
            else:
                _check_key_in_file(key)
                metadata[key] = _metadata_value(value, f"metadata.{key}")
        if "userdata" in obj and "userdata_base64" in obj:
            raise ValidationError("userdata_base64", "give either userdata or userdata_base64, not both")
        userdata = None
        if obj.get("userdata") is not None:
            if not isinstance(obj["userdata"], str):
                raise ValidationError("userdata", "must be a string (use userdata_base64 for binary data)")
            userdata = obj["userdata"].encode("utf-8", "surrogatepass")
        elif obj.get("userdata_base64") is not None:
            userdata = decode_base64(obj["userdata_base64"], "userdata_base64")
        password = obj.get("password")
        if password is not None and not isinstance(password, str):
            raise ValidationError("password", "must be a string")
        data = cls(
            metadata=metadata,
            public_keys=public_keys,
            userdata=userdata or None,
            password=password or None,
            vendor_data=_json_object(obj.get("vendor_data", {}), "vendor_data"),
            network_data=_json_object(obj.get("network_data", {}), "network_data"),
            openstack_metadata=_json_object(obj.get("openstack_metadata", {}), "openstack_metadata"),
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
                    data.public_keys = _parse_public_keys(content, f"{where} (public-keys)")
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
        for name in ("vendor_data", "network_data", "openstack_metadata"):
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
        max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES,
    ) -> VmData:
        """Apply command-line overrides (each replaces the field it names) and validate the result."""
        new = self.copy()
        if userdata is not None:
            new.userdata = userdata or None
        if password is not None:
            new.password = password
        if public_keys is not None:
            new.public_keys = list(public_keys)
        if hostname is not None:
            new.metadata[HOSTNAME_KEY] = hostname
        new.validate(max_userdata_bytes)
        return new

    # ---- validation ----------------------------------------------------------------------------------------

    @property
    def vm_id(self) -> str:
        return self.metadata.get(VM_ID_KEY, "")

    @property
    def hostname(self) -> str | None:
        return self.metadata.get(HOSTNAME_KEY)

    def validate(self, max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES) -> None:
        """Raise ValidationError naming the first bad field; return None when everything is acceptable."""
        if not isinstance(self.metadata, dict):
            raise ValidationError("metadata", "must be an object")
        vm_id = self.metadata.get(VM_ID_KEY)
        if vm_id is None or (isinstance(vm_id, str) and not vm_id.strip()):
            raise ValidationError(f"metadata.{VM_ID_KEY}", "required (it becomes meta_data.json's uuid)")
        for key, value in self.metadata.items():
            where = f"metadata.{key}"
            if key == PUBLIC_KEYS_KEY:
                raise ValidationError(where, "public keys belong in public_keys")
            check_metadata_key(key, where)
            if not isinstance(value, str):
                raise ValidationError(where, "must be a string")
            _metadata_value(value, where)
        vm_id = self.metadata[VM_ID_KEY]
        if _CONTROL_CHARS_RE.search(vm_id) or len(vm_id) > 255:
            raise ValidationError(f"metadata.{VM_ID_KEY}", "must be one line of at most 255 characters")
        if self.hostname is not None:
            check_hostname(self.hostname, f"metadata.{HOSTNAME_KEY}")
        if not isinstance(self.public_keys, list):
            raise ValidationError(f"metadata.{PUBLIC_KEYS_KEY}", "must be a list of keys")
        for i, key in enumerate(self.public_keys):
            check_public_key(key, f"metadata.{PUBLIC_KEYS_KEY}[{i}]")
        if self.userdata is not None:
            if not isinstance(self.userdata, bytes):
                raise ValidationError("userdata", "must be bytes")
            if len(self.userdata) > max_userdata_bytes:
                raise ValidationError(
                    "userdata", f"{len(self.userdata)} bytes after decoding; the limit is {max_userdata_bytes}"
                )
        if self.password is not None:
            check_password(self.password)
        check_label(self.label)
        _json_object(self.vendor_data, "vendor_data")
        check_network_data(self.network_data)
        _json_object(self.openstack_metadata, "openstack_metadata")
        clash = sorted(GENERATED_OPENSTACK_KEYS & set(self.openstack_metadata))
        if clash:
            raise ValidationError(f"openstack_metadata.{clash[0]}", "is generated from metadata; set it there")
        if "random_seed" in self.openstack_metadata:
            decode_base64(self.openstack_metadata["random_seed"], "openstack_metadata.random_seed")
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


# ---- field checks, usable on their own --------------------------------------------------------------------


def check_metadata_key(key: str, where: str = "metadata") -> None:
    """A metadata key becomes a file name: letters, digits, '.', '_', '-', no leading dot, ≤ 60 chars."""
    if not isinstance(key, str) or not _METADATA_KEY_RE.fullmatch(key) or ".." in key:
        raise ValidationError(
            where, "key must be 1-60 letters, digits, '.', '_' or '-', start with a letter or digit, no '..'"
        )


def _check_key_in_file(key: str) -> None:
    """The key first: an unusable key (":", "../x") is what to report, quoted in the message, since as part of a
    field name it would garble the "field: message" line."""
    try:
        check_metadata_key(key)
    except ValidationError as e:
        raise ValidationError("metadata", f"key {json.dumps(key)}: {e.message}") from None


def check_hostname(name: str, where: str = "hostname") -> None:
    """RFC 1123 host name (labels of letters, digits and '-', up to 253 characters)."""
    if not isinstance(name, str):
        raise ValidationError(where, "must be a string")
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if not name or len(name) > 253 or not all(_HOSTNAME_LABEL_RE.fullmatch(label) for label in labels):
        raise ValidationError(where, f"{_quote(name)} is not a valid host name")


def check_public_key(key: str, where: str = "public_keys") -> None:
    """An OpenSSH public key: a known type, base64 whose blob names the same type, an optional comment."""
    if not isinstance(key, str):
        raise ValidationError(where, "must be a string")
    parts = key.strip().split(None, 2)
    if len(parts) < 2 or _CONTROL_CHARS_RE.search(key.strip()) or parts[0] not in _SSH_KEY_TYPES:
        raise ValidationError(where, "does not look like an SSH public key ('<type> <base64> [comment]')")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        blob_type = blob[4 : 4 + length].decode("ascii")
    except (ValueError, struct.error, UnicodeDecodeError):  # ValueError: binascii.Error, or non-ASCII text
        raise ValidationError(where, "the key's base64 body is not valid") from None
    if blob_type != parts[0]:
        raise ValidationError(where, f"the key body says {blob_type!r} but the key type is {parts[0]!r}")


def check_password(password: str, where: str = "password") -> None:
    """One line of printable text (it goes into files, JSON and cloud-config). Never quoted in errors."""
    if not isinstance(password, str) or not password:
        raise ValidationError(where, "must be a non-empty string")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(where, f"longer than {MAX_PASSWORD_CHARS} characters")
    if _PASSWORD_BAD_CHARS_RE.search(password):
        raise ValidationError(where, "contains a control character or line break (newline, tab, NUL …)")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(where, "is not valid Unicode text") from None


def check_label(label: str, where: str = "label") -> None:
    """Volume label: 1-16 printable ASCII characters, no trailing space (cloud-init looks for config-2 or CONFIG-2).

    16, not ISO 9660's 32: the Joliet volume descriptor holds 16 UCS-2 characters. A trailing space would be lost
    in the space padding of the field."""
    if not isinstance(label, str) or not re.fullmatch(r"[\x21-\x7e](?:[\x20-\x7e]{0,14}[\x21-\x7e])?", label):
        raise ValidationError(where, "must be 1-16 printable ASCII characters, not ending with a space")


def check_network_data(network_data: dict[str, Any], where: str = "network_data") -> None:
    """A JSON object; any ``links[].ethernet_mac_address`` must be a MAC address."""
    _json_object(network_data, where)
    links = network_data.get("links", [])
    if not isinstance(links, list):
        raise ValidationError(f"{where}.links", "must be a list")
    for i, link in enumerate(links):
        if not isinstance(link, dict):
            raise ValidationError(f"{where}.links[{i}]", "must be an object")
        mac = link.get("ethernet_mac_address")
        if mac is not None and not (isinstance(mac, str) and _MAC_RE.fullmatch(mac)):
            raise ValidationError(f"{where}.links[{i}].ethernet_mac_address", f"{_quote(mac)} is not a MAC address")


def check_tree_path(path: str, where: str) -> None:
    """A relative path inside the drive: no empty, '.' or '..' parts, no NUL, no backslash."""
    if not isinstance(path, str):
        raise ValidationError(where, "must be a string")
    parts = path.split("/")
    if not path or "\x00" in path or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ValidationError(where, "is not a safe relative path")


def decode_base64(value: Any, where: str) -> bytes:
    """Strict base64 (line breaks and spaces allowed, as base64 tools wrap)."""
    if not isinstance(value, str):
        raise ValidationError(where, "must be a base64 string")
    compact = re.sub(r"\s+", "", value)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(where, "is not valid base64") from None


def read_password_file(path: str) -> str:
    """A password from a file (``-`` for standard input); one trailing newline is dropped."""
    import sys

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_PASSWORD_CHARS * 4 + 2)
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError("password-file", f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    check_password(text, "password-file")
    return text


def read_ssh_key_file(path: str) -> list[str]:
    """SSH public keys from a file: one per line, like authorized_keys; blank lines and # comments skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_METADATA_VALUE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError("ssh-key-file", f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValidationError("ssh-key-file", f"{path} holds no key")
    for i, key in enumerate(keys):
        check_public_key(key, f"ssh-key-file {path} line {i + 1}")
    return keys


def read_userdata_file(path: str, max_bytes: int = DEFAULT_MAX_USERDATA_BYTES) -> bytes:
    """User data from a file, as bytes (``-`` for standard input)."""
    import sys

    try:
        if path == "-":
            data = sys.stdin.buffer.read(max_bytes + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
    except OSError as e:
        raise ValidationError("userdata-file", f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise ValidationError("userdata-file", f"larger than {max_bytes} bytes")
    return data


# ---- helpers ----------------------------------------------------------------------------------------------


def _quote(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _metadata_value(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError(where, "must be a string")
    text = str(value)
    if "\x00" in text:
        raise ValidationError(where, "contains a NUL character")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_METADATA_VALUE_BYTES:
        raise ValidationError(where, f"longer than {MAX_METADATA_VALUE_BYTES} bytes")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(where, "is not valid Unicode text") from None
    return text


def _parse_public_keys(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        # "\n" only, as public-keys.txt is read back (and as sshd reads authorized_keys): splitlines() would also
        # split at \x85 or U+2028 inside a comment.
        keys = [line.strip() for line in value.split("\n") if line.strip()]
    elif isinstance(value, list):
        keys = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValidationError(f"{where}[{i}]", "must be a string")
            keys.append(item.strip())
    else:
        raise ValidationError(where, "must be a list of keys or a string with one key per line")
    for i, key in enumerate(keys):
        check_public_key(key, f"{where}[{i}]")
    return keys


def _json_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(where, "must be a JSON object")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # lone surrogates (from "\ud800" escapes) cannot be written
        # Keys that json.dumps converts (YAML's `1: x`, tuples) would not read back as they were given.
        same = json.loads(text) == value
    except UnicodeEncodeError:
        raise ValidationError(where, "is not valid Unicode text (lone surrogate)") from None
    except (TypeError, ValueError) as e:
        raise ValidationError(where, f"is not plain JSON ({e})") from None
    except RecursionError:
        raise ValidationError(where, "is nested too deeply") from None
    if not same:
        raise ValidationError(where, "is not plain JSON (object keys must be strings)")
    return value


def _load_json_or_yaml(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValidationError("vmdata", "nested too deeply") from None
    except json.JSONDecodeError as json_error:
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            raise ValidationError(
                "vmdata", f"invalid JSON at line {json_error.lineno} column {json_error.colno}: {json_error.msg}"
            ) from None
        return _load_yaml(text)
    except ValueError as e:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise ValidationError("vmdata", f"invalid JSON: {e}") from None


def _load_yaml(text: str) -> Any:
    import yaml  # imported here: JSON files, the common case, don't pay for it

    class _NoAliasLoader(yaml.SafeLoader):
        # Aliases let a small file expand into a huge object ("billion laughs"); a VM data file needs none.
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise ValidationError("vmdata", f"YAML aliases are not accepted (line {mark.line + 1})")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except ValidationError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ValidationError("vmdata", f"neither valid JSON nor YAML{where}: {problem}") from None
    except RecursionError:
        raise ValidationError("vmdata", "nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:  # constructors: 2001-13-01, 5000-digit integers …
        raise ValidationError("vmdata", f"YAML value not accepted: {e}") from None

"""Checks of single fields of VM data, usable on their own: each raises ValidationError naming the field, and
none quotes a password. VmData.validate and the readers of command-line files build on them."""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from typing import Any

from .defaults import MAX_CONCURRENCY, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from .errors import ValidationError

MAX_METADATA_VALUE_BYTES = 64 * 1024
MAX_PASSWORD_CHARS = 512
# How a VM is named besides its inventory path (the CLI, batch lines and the Ansible modules): its instance or BIOS
# UUID, with or without dashes, or its managed object id.
VM_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
VM_MOID_RE = re.compile(r"^vm-\d+$")

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
# CloudStack's guest scripts read this literal password as "the VM has saved its password already" and keep the old
# one (cloud-set-guest-password-configdrive, cloud-set-guest-sshkey-password-userdata-configdrive): refused, or the
# guest would silently never get it.
CLOUDSTACK_NO_CHANGE_PASSWORD = "saved_password"


def check_metadata_key(key: str, where: str = "metadata") -> None:
    """A metadata key becomes a file name: letters, digits, '.', '_', '-', no leading dot, ≤ 60 chars."""
    if not isinstance(key, str) or not _METADATA_KEY_RE.fullmatch(key) or ".." in key:
        raise ValidationError(
            where, "key must be 1-60 letters, digits, '.', '_' or '-', start with a letter or digit, no '..'"
        )


def check_key_in_file(key: str) -> None:
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
        raise ValidationError(where, f"{quote(name)} is not a valid host name")


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


def check_public_keys(keys: Any, where: str = "public_keys") -> None:
    """A list (or tuple) of OpenSSH public keys (``check_public_key`` each, named ``where[i]``)."""
    if not isinstance(keys, (list, tuple)):
        raise ValidationError(where, "must be a list of keys")
    for i, key in enumerate(keys):
        check_public_key(key, f"{where}[{i}]")


def check_userdata(userdata: Any, max_userdata_bytes: int | None, where: str = "userdata") -> None:
    """User data as bytes, within the input limit (``None``: data that has entered already, no limit)."""
    if not isinstance(userdata, bytes):
        raise ValidationError(where, "must be bytes")
    if max_userdata_bytes is not None and len(userdata) > max_userdata_bytes:
        raise ValidationError(where, f"{len(userdata)} bytes after decoding; the limit is {max_userdata_bytes}")


def check_password(password: str, where: str = "password") -> None:
    """One line of printable text (it goes into files, JSON and cloud-config). Never quoted in errors (but for the
    one literal that is refused because it is CloudStack's marker, not anyone's password)."""
    if not isinstance(password, str) or not password:
        raise ValidationError(where, "must be a non-empty string")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(where, f"longer than {MAX_PASSWORD_CHARS} characters")
    if " ".join(password.split()) == CLOUDSTACK_NO_CHANGE_PASSWORD:  # as the older script sees it, spaces squeezed
        raise ValidationError(
            where,
            f"{CLOUDSTACK_NO_CHANGE_PASSWORD} is the word CloudStack's guest scripts read as \"keep the old "
            'password" (it can never be set): choose another',
        )
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
    json_object(network_data, where)
    links = network_data.get("links", [])
    if not isinstance(links, list):
        raise ValidationError(f"{where}.links", "must be a list")
    for i, link in enumerate(links):
        if not isinstance(link, dict):
            raise ValidationError(f"{where}.links[{i}]", "must be an object")
        mac = link.get("ethernet_mac_address")
        if mac is not None and not (isinstance(mac, str) and _MAC_RE.fullmatch(mac)):
            raise ValidationError(f"{where}.links[{i}].ethernet_mac_address", f"{quote(mac)} is not a MAC address")


def is_mac(text: str) -> bool:
    """``xx:xx:xx:xx:xx:xx`` in hex, either case."""
    return bool(_MAC_RE.fullmatch(text))


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


def userdata_from(obj: dict[str, Any]) -> bytes | None:
    """User data given as ``userdata`` (text) or ``userdata_base64`` (bytes), never both; "" means none."""
    if "userdata" in obj and "userdata_base64" in obj:
        raise ValidationError("userdata_base64", "give either userdata or userdata_base64, not both")
    if obj.get("userdata") is not None:
        if not isinstance(obj["userdata"], str):
            raise ValidationError("userdata", "must be a string (use userdata_base64 for binary data)")
        return obj["userdata"].encode("utf-8", "surrogatepass") or None
    if obj.get("userdata_base64") is not None:
        return decode_base64(obj["userdata_base64"], "userdata_base64") or None
    return None


def metadata_value(value: Any, where: str) -> str:
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


def parse_public_keys(value: Any, where: str) -> list[str]:
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


def json_object(value: Any, where: str) -> dict[str, Any]:
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


def quote(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# What a name sent to vSphere may not hold: control characters (XML 1.0 cannot carry most; vCenter answers
# InvalidRequest) and lone surrogates (bytes of argv that were not UTF-8; they cannot be encoded at all).
UNSENDABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def check_datastore_name(name: str, where: str = "datastore") -> str:
    """Datastore names go inside ``[…]`` of a datastore path: no brackets, slashes or NUL."""
    if not name or any(c in name for c in "[]/\\") or UNSENDABLE.search(name) or name != name.strip():
        raise ValidationError(where, f"{name!r} is not a usable datastore name")
    return name


def check_inventory_path(path: str, where: str) -> str:
    """A datacenter or folder as an inventory path (``DC0``, ``DC0/vm/web``): the path without its outer
    slashes."""
    stripped = path.strip().strip("/")
    if not stripped or UNSENDABLE.search(path):
        raise ValidationError(where, "empty, or holds a control character or bytes that are not text")
    return stripped


def check_concurrency(concurrency: int, field: str = "concurrency") -> None:
    """Batch mode's VMs at a time (the CLI's --concurrency, the Ansible module's concurrency)."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValidationError(field, f"must be between 1 and {MAX_CONCURRENCY}")


def check_password_length(length: int, field: str = "length") -> None:
    """reset-password's generated password length (the CLI's --length, the Ansible module's password_length)."""
    if not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise ValidationError(field, f"must be between {MIN_PASSWORD_LENGTH} and {MAX_PASSWORD_LENGTH}")

"""VM data as VMware guestinfo keys, the form cloud-init's ``DataSourceVMware`` reads through VMware Tools
(``vmware-rpctool "info-get guestinfo.<key>"``; REFERENCE.md §10): the layout of the guestinfo transport.

Three values, each with its ``<key>.encoding``: ``guestinfo.metadata`` (JSON: ``instance-id``, ``local-hostname``,
``public-keys-data`` (one key a line: the form both cloud-init and cloudbase-init read), ``network`` in network
config version 2, ``redact``), ``guestinfo.userdata`` and ``guestinfo.vendordata``. Every key is always in the
result; ``""`` means "not set", as vSphere removes an extraConfig key set to ``""``, so the same mapping also clears
what an earlier version set and this one does not.

Encodings: a value goes as plain text when it is text cloud-init reads back unchanged, else base64; gzip+base64
when that is shorter (guestinfo is kept small: a VMX and its guest-set data default to 1 MB). The bytes are
reproducible: same VM data, same keys (gzip without a time stamp or name, JSON with sorted keys).

The password is left out unless asked for: any process in the guest and anyone who may read the VM's
configuration in vCenter can read guestinfo. When it is asked for, it goes in the vendor data (the cloud-config
the config drive carries too) and the vendor data's key in ``redact``, so cloud-init overwrites it with ``---``
once read.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ValidationError
from .layout import openstack_vendor_data
from .network import netplan, section_of_netplan
from .vmdata import VmData

PREFIX = "guestinfo."
METADATA, USERDATA, VENDORDATA = "metadata", "userdata", "vendordata"
NAMES = (METADATA, USERDATA, VENDORDATA)
PLAIN, BASE64, GZIP_BASE64 = "", "base64", "gzip+base64"  # PLAIN: no encoding key, as cloud-init reads it
REDACTED = "---"  # what cloud-init writes over a redacted key; it reads "---" (and "") as "no value"
# Sizes (docs/usage.md, "Guestinfo: sizes"; REFERENCE.md §10). No VMware document states a per-key limit for
# values set through the API. VMware's own API for the same data, CloudinitPrep, takes metadata and user data of at
# most 524288 bytes each: the per-key limit. The VMX file (which holds every extraConfig key) and the guest-set
# data default to 1 MB, and a guest's ``info-get`` reply is "about 1MB": all the keys together stay at 768 KiB,
# leaving a quarter of the VMX's megabyte to the VM's own configuration.
MAX_KEY_BYTES = 512 * 1024
MAX_TOTAL_BYTES = 768 * 1024
# gzip's header with no file name, no time stamp (mtime 0), maximum compression, OS "unknown": reproducible bytes
_GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 2, 255])


def key(name: str) -> str:
    """The extraConfig key of a value: ``guestinfo.metadata``."""
    return PREFIX + name


def encoding_key(name: str) -> str:
    return f"{PREFIX}{name}.encoding"


def guestinfo_keys(data: VmData, *, password: bool = False, redact: Iterable[str] = ()) -> dict[str, str]:
    """The guestinfo keys for ``data``: ``{extraConfig key: value}``, ``""`` for a key not set.

    ``password``: put the password in (vendor data), which also redacts the vendor data. ``redact``: names
    (``userdata``, ``vendordata``, ``metadata``) cloud-init is to overwrite with ``---`` after reading them."""
    redact = list(dict.fromkeys(redact))
    unknown = [name for name in redact if name not in NAMES]
    if unknown:
        raise ValidationError("redact", f"{unknown[0]!r} is not a guestinfo value ({', '.join(NAMES)})")
    userdata = data.userdata
    vendordata = _vendordata(data if password else data.copy(password=None))
    if password and data.password and VENDORDATA not in redact:
        redact.append(VENDORDATA)
    present = {USERDATA: userdata, VENDORDATA: vendordata}
    redact = [name for name in redact if name == METADATA or present[name]]
    values = {METADATA: _json(metadata(data, redact)), **present}
    out: dict[str, str] = {}
    for name in NAMES:
        raw = values[name]
        value, encoding = encode(raw) if raw else ("", PLAIN)
        out[key(name)], out[encoding_key(name)] = value, encoding
    check_size(out)
    return out


def all_keys() -> tuple[str, ...]:
    """Every extraConfig key this transport writes (the values, then their encodings)."""
    return tuple(key(n) for n in NAMES) + tuple(encoding_key(n) for n in NAMES)


class GuestinfoTooLarge(ValidationError):
    """The VM data does not fit guestinfo (it may fit the ISO transports: the message says so)."""


def check_size(keys: dict[str, str]) -> None:
    """Refused before anything is changed: a key above MAX_KEY_BYTES, or all of them above MAX_TOTAL_BYTES (each
    counted as the key's name and value, as the VMX holds them). The same data may fit an ISO transport."""
    way_out = "the same VM data fits the ISO transports: use --transport configdrive or --transport nocloud"
    for name, value in keys.items():
        size = len(value.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise GuestinfoTooLarge(
                name, f"{size} bytes once encoded, above guestinfo's {MAX_KEY_BYTES}-byte limit per key; {way_out}"
            )
    total = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in keys.items())
    if total > MAX_TOTAL_BYTES:
        raise GuestinfoTooLarge(
            "guestinfo", f"{total} bytes in all, above guestinfo's {MAX_TOTAL_BYTES}-byte limit; {way_out}"
        )


def read_keys(keys: Mapping[str, str]) -> VmData:
    """The VM data the keys carry, for an update to start from: the metadata (vm-id, hostname, public keys, the
    network section), the user data, the caller's vendor data. Not the password: the vendor data this tool wrote
    for it (a MIME message of its own) is left out, as is a value cloud-init has blanked (``---``)."""
    raw = {n: _value(keys, n) for n in NAMES}
    try:
        meta = json.loads(raw[METADATA] or b"{}")
    except ValueError:
        raise ValidationError(key(METADATA), "is not JSON: not written by this tool") from None
    if not isinstance(meta, dict):
        raise ValidationError(key(METADATA), "is not a JSON object: not written by this tool")
    metadata = {"vm-id": str(meta.get("instance-id", ""))}
    if meta.get("local-hostname"):
        metadata["local-hostname"] = str(meta["local-hostname"])
    vendor = raw[VENDORDATA]
    vendor_data = {} if not vendor or vendor.startswith(OWN_VENDOR_DATA) else {"cloud-init": vendor.decode("utf-8")}
    network = section_of_netplan(meta["network"]) if isinstance(meta.get("network"), dict) else None
    if meta.get("network") is not None and network is None:
        raise ValidationError(key(METADATA), "holds network config this tool does not write: give --vmdata")
    public = meta.get("public-keys-data") or meta.get("public-keys") or []
    public = public.splitlines() if isinstance(public, str) else public
    return VmData(metadata=metadata, public_keys=[str(k) for k in public if str(k).strip()],
                  userdata=raw[USERDATA] or None, vendor_data=vendor_data, network=network)  # fmt: skip


def redacted(keys: Mapping[str, str]) -> list[str]:
    """The names the metadata's ``redact`` list makes cloud-init blank (none when the metadata is not ours)."""
    try:
        meta = json.loads(_value(keys, METADATA) or b"{}")
    except (ValueError, ValidationError):
        return []
    names = meta.get("redact") if isinstance(meta, dict) else None
    return [n for n in names if n in NAMES] if isinstance(names, list) else []


# How the vendor data this tool writes for a password begins (layout.multipart's boundary).
OWN_VENDOR_DATA = b'Content-Type: multipart/mixed; boundary="esxi-configdrive-'


def _value(keys: Mapping[str, str], name: str) -> bytes:
    value = keys.get(key(name), "")
    if value in ("", REDACTED):
        return b""
    try:
        return decode(value, keys.get(encoding_key(name), ""))
    except (ValueError, zlib.error):
        raise ValidationError(key(name), "cannot be decoded by its encoding: not written by this tool") from None


def metadata(data: VmData, redact: list[str]) -> dict[str, Any]:
    """What ``guestinfo.metadata`` says. The instance id is the VM id, as on the config drive (its
    meta_data.json ``uuid``): a VM moved from one transport to the other stays the same instance to cloud-init."""
    if not data.vm_id:
        raise ValidationError("metadata.vm-id", "required: it becomes cloud-init's instance-id")
    section = data.section_for_v2(
        "guestinfo carries the network section only (nova's network_data has no netplan form)"
    )
    out: dict[str, Any] = {"instance-id": data.vm_id}
    if data.hostname:
        out["local-hostname"] = data.hostname
    if data.public_keys:  # one a line: what cloudbase-init reads (public-keys-data only); cloud-init reads it first
        out["public-keys-data"] = "\n".join(data.public_keys)
    if section is not None:
        out["network"] = netplan(section)
    if redact:
        out["redact"] = redact  # names without "guestinfo.": cloud-init puts the prefix in front
    return out


def _vendordata(data: VmData) -> bytes | None:
    """cloud-init's vendor data: what the config drive's vendor_data.json has under ``cloud-init``."""
    value = openstack_vendor_data(data).get("cloud-init")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("vendor_data.cloud-init", "must be a string (cloud-config or MIME) for guestinfo")
    return value.encode("utf-8")


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode(raw: bytes) -> tuple[str, str]:
    """``(value, encoding)`` for ``raw``: plain or base64, or gzip+base64 when that is shorter."""
    text = _plain(raw)
    value, encoding = (text, PLAIN) if text is not None else (base64.b64encode(raw).decode("ascii"), BASE64)
    packed = base64.b64encode(gzip_bytes(raw)).decode("ascii")
    return (packed, GZIP_BASE64) if len(packed) < len(value.encode("utf-8")) else (value, encoding)


def _plain(raw: bytes) -> str | None:
    """``raw`` as text, if cloud-init would read it back as it is: UTF-8, no control characters but tab, CR and
    newline, no trailing white space (cloud-init strips it), not empty or ``---`` (both read as "no value")."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 32 and c not in "\t\r\n") or ord(c) == 127 for c in text):
        return None
    if text != text.rstrip() or text in ("", REDACTED):
        return None
    return text


def gzip_bytes(raw: bytes) -> bytes:
    """gzip (RFC 1952) of ``raw`` with the same bytes on every run and Python version (no time stamp)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(raw) + deflate.flush()
    return _GZIP_HEADER + body + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)


def decode(value: str, encoding: str) -> bytes:
    """The bytes of a value, as cloud-init decodes it (any other encoding is plain text to it)."""
    if encoding in (GZIP_BASE64, "gz+b64"):
        return zlib.decompress(base64.b64decode(value), 16 + zlib.MAX_WBITS)
    if encoding in (BASE64, "b64"):
        return base64.b64decode(value)
    return value.encode("utf-8")

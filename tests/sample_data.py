"""Shared test data and helpers for the builder tests (imported as ``sample_data``; tests/ is on sys.path).

The SSH public keys were generated once with ``ssh-keygen -t ed25519|rsa -b 2048|ecdsa -b 256``; they are real
keys (the private halves were thrown away), so they exercise ``check_public_key`` the way users' keys do.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from esxi_configdrive import VmData

ROOT = Path(__file__).resolve().parent.parent

ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM1ER+mSr0AvK9kTOntF1DF7YNp01At3V/ODrC4l0i8M alice@example"
RSA_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCKk7d1UqBkHhqwY4+oL7zhM48g72tV6mDU4tb7mUCvXD4EnnrNom0O50JWD4PS/5yyPWBdbz"
    "2dd/KZs+dhCZ3hyI1dkSJFIF0XOPWMmbPSNlDTgXts7sUBhGrW5VSnk3AZ/D8hoOjhu6KJ8IL0PKdWntV3VX4HnUq/QCNXYj3yxenmABUdHw07j"
    "S7Ox+8OSP3BXXwEOxM5GDgk5C0DkWXJjG6vmWlmsksNw0yn4t5dQZiFVO9trXI5JuhPDlcZknLbicit9hBg3DlfTu6gae9agr9hOOKIODTKtOvYGr"
    "aDmjNrmK9kV4slC9aaX14ItGlfEKeX5sMGCFkamNg+RSUn bob@example"
)
ECDSA_KEY = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLbzsV3srgwuPvrFQkUyUCCd5ssHssaAdy2qQtLx"
    "fdTyRDcFYYBkd+Znu2X/SgjzFWHmFT/a8LgNLG++/JYfOD8="  # no comment: its meta_data.json name is "key"
)
KEYS = (ED25519_KEY, RSA_KEY, ECDSA_KEY)

VM_ID = "7c1e4a52-9a3f-4c55-8d2e-0d6b9d1f3a10"
HOSTNAME = "web-1"
USERDATA = b"#cloud-config\nruncmd:\n  - [sh, -c, 'echo hello > /tmp/hello']\n"
# Quotes, a colon, a hash, backslash and non-ASCII: everything that breaks naive YAML/JSON/shell quoting.
PASSWORD = "s3cr\"et: #x\\y 'é'"
NETWORK_DATA = {
    "links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "00:50:56:aa:bb:cc", "mtu": 1500}],
    "networks": [{"id": "net0", "link": "eth0", "type": "ipv4_dhcp"}],
    "services": [{"type": "dns", "address": "192.0.2.53"}],
}

METADATA = {
    "vm-id": VM_ID,
    "instance-id": "i-2-24-VM",
    "local-hostname": HOSTNAME,
    "availability-zone": "zone-a",
    "service-offering": "Small Instance",
    "public-hostname": "web-1.example.org",
    "cloud-identifier": "CloudStack-{c0ffee}",
    "local-ipv4": "192.0.2.10",
}


def sample_dict(**changes: Any) -> dict[str, Any]:
    """The documented file format, with every part present."""
    out: dict[str, Any] = {
        "metadata": {**METADATA, "public-keys": [ED25519_KEY, RSA_KEY]},
        "userdata": USERDATA.decode(),
        "password": PASSWORD,
        "network_data": NETWORK_DATA,
    }
    out.update(changes)
    return out


def sample_vmdata(**changes: Any) -> VmData:
    """A full VmData (the sample_dict content); keyword arguments replace fields."""
    data = VmData(
        metadata=dict(METADATA),
        public_keys=[ED25519_KEY, RSA_KEY],
        userdata=USERDATA,
        password=PASSWORD,
        network_data=dict(NETWORK_DATA),
    )
    return data.copy(**changes)


def minimal_vmdata(**changes: Any) -> VmData:
    return VmData(metadata={"vm-id": VM_ID}).copy(**changes)


def numbered_vmdata(i: int, version: int, *, uuid_prefix: str, hostname_prefix: str) -> VmData:
    """The data of VM number ``i`` of a many-VM test, its user data at ``version``: a vm-id and host name of the
    test's own (``uuid_prefix``: 8 hex digits; ``hostname_prefix``) and an SSH key."""
    return VmData.from_dict({
        "metadata": {"vm-id": f"{uuid_prefix}-0000-4000-8000-{i:012d}", "local-hostname": f"{hostname_prefix}-{i}",
                     "public-keys": [ED25519_KEY]},
        "userdata": f"#cloud-config\n# {i} v{version}\n",
    })  # fmt: skip


def password_with_leading_zero_md5() -> str:
    """A password whose MD5 starts with a 0 nibble (so Java's BigInteger hex drops it)."""
    for n in itertools.count():
        candidate = f"pw-{n}"
        if hashlib.md5(candidate.encode()).hexdigest().startswith("0"):
            return candidate
    raise AssertionError("unreachable")


def fake_key(key_type: str, body_type: str | None = None, comment: str = "") -> str:
    """A syntactically valid OpenSSH public key whose blob names ``body_type`` (default: ``key_type``)."""
    name = (body_type or key_type).encode()
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", 4) + b"\x00\x01\x02\x03"
    return f"{key_type} {base64.b64encode(blob).decode()}" + (f" {comment}" if comment else "")


# ---- external readers -------------------------------------------------------------------------------------

REQUIRE_READERS = os.environ.get("ESXI_CONFIGDRIVE_REQUIRE_READERS") == "1"


def need(what: str, available: bool, reason: str) -> None:
    """Skip when a reader is missing, or fail when CI says readers are required."""
    if available:
        return
    if REQUIRE_READERS:
        pytest.fail(f"{what} is required (ESXI_CONFIGDRIVE_REQUIRE_READERS=1) but {reason}", pytrace=False)
    pytest.skip(f"{what}: {reason}")


def need_importable(what: str, module: str) -> None:
    """Skip (or fail in CI) unless ``module`` imports in a fresh interpreter of this venv."""
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    need(what, probe.returncode == 0, f"not importable (pip: .[test]): {probe.stderr[-300:]}")


def need_tool(name: str) -> str:
    """The path of an external program (also looked up in /sbin, /usr/sbin: blkid lives there)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(name, path=search)
    need(name, path is not None, "not found on PATH (apt: genisoimage, p7zip-full, util-linux)")
    assert path is not None
    return path


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a program, failing the test with its output when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def extract_with_7z(iso_path: Path, dest: Path) -> Path:
    """Extract an ISO with 7-Zip (as cloudbase-init does on Windows) and return the folder."""
    seven = next((t for t in ("7z", "7za") if shutil.which(t)), None) or need_tool("7z")
    run([seven, "x", "-y", f"-o{dest}", str(iso_path)])
    return dest


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root``: relative POSIX path -> content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cloud_init_path() -> str:
    """The folder holding Debian's ``cloudinit`` package (scripts/fetch-cloud-init unpacks it into .cache)."""
    cached = ROOT / ".cache/cloud-init/root/usr/lib/python3/dist-packages"
    if not (cached / "cloudinit").is_dir():
        try:
            proc = subprocess.run([str(ROOT / "scripts/fetch-cloud-init")], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            need("cloud-init reader", False, f"scripts/fetch-cloud-init failed: {e}")
        else:
            need("cloud-init reader", proc.returncode == 0, f"scripts/fetch-cloud-init failed: {proc.stderr[-500:]}")
            cached = Path(proc.stdout.strip().splitlines()[-1])
    need("cloud-init reader", (cached / "cloudinit").is_dir(), f"{cached}/cloudinit is missing")
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util as u; "
            "print(' '.join(m for m in ('yaml','jinja2','jsonpatch','jsonschema','configobj','requests','netifaces')"
            " if u.find_spec(m) is None))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    need("cloud-init reader", not missing, f"its Python dependencies are not installed: {missing} (pip: .[test])")
    return str(cached)


# ---- an independent ISO 9660 directory parser -------------------------------------------------------------
# Written from Ecma-119 (directory records), SUSP/RRIP (NM, CE, SP) and the Joliet specification, sharing no code
# with pycdlib or the tool: it lets the tests see where each name's data really is.

SECTOR = 2048


def _both_endian32(raw: bytes, offset: int) -> int:
    return struct.unpack_from("<I", raw, offset)[0]


def volume_descriptors(iso: bytes) -> dict[str, bytes]:
    """'primary' and (when present) 'joliet' volume descriptors."""
    out: dict[str, bytes] = {}
    for sector in itertools.count(16):
        vd = iso[sector * SECTOR : (sector + 1) * SECTOR]
        if len(vd) < SECTOR or vd[1:6] != b"CD001":
            raise AssertionError(f"no volume descriptor set terminator (sector {sector})")
        if vd[0] == 255:
            return out
        if vd[0] == 1:
            out["primary"] = vd
        elif vd[0] == 2 and vd[88:91] in (b"%/@", b"%/C", b"%/E"):
            out["joliet"] = vd
    raise AssertionError("unreachable")


def _records(iso: bytes, extent: int, size: int) -> list[bytes]:
    data = iso[extent * SECTOR : extent * SECTOR + size]
    records, pos = [], 0
    while pos < len(data):
        length = data[pos]
        if length == 0:  # records never cross a sector boundary: the rest of this sector is padding
            pos = (pos // SECTOR + 1) * SECTOR
            continue
        records.append(data[pos : pos + length])
        pos += length
    return records


def _susp_entries(iso: bytes, area: bytes) -> list[tuple[bytes, bytes]]:
    entries, pos = [], 0
    while pos + 4 <= len(area):
        sig, length = area[pos : pos + 2], area[pos + 2]
        if length < 4:
            break
        entries.append((sig, area[pos + 4 : pos + length]))
        if sig == b"CE":  # continuation area: block, offset, length (both-endian 32-bit each)
            body = area[pos + 4 : pos + length]
            block, offset, ce_len = (_both_endian32(body, i) for i in (0, 8, 16))
            start = block * SECTOR + offset
            entries.extend(_susp_entries(iso, iso[start : start + ce_len]))
        if sig == b"ST":
            break
        pos += length
    return entries


def iso_listing(iso: bytes, tree: str = "rockridge") -> dict[str, tuple[int, int]]:
    """Every file of the ISO: path -> (extent, size). ``tree``: 'rockridge' (primary volume, NM names),
    'iso9660' (primary volume, plain names with ';1'), or 'joliet' (UCS-2 names)."""
    vds = volume_descriptors(iso)
    vd = vds["joliet" if tree == "joliet" else "primary"]
    root = vd[156 : 156 + 34]
    files: dict[str, tuple[int, int]] = {}

    def walk(extent: int, size: int, prefix: str) -> None:
        for rec in _records(iso, extent, size):
            name_len = rec[32]
            raw_name = rec[33 : 33 + name_len]
            if raw_name in (b"\x00", b"\x01"):
                continue
            rec_extent, rec_size, flags = _both_endian32(rec, 2), _both_endian32(rec, 10), rec[25]
            name = raw_name.decode("utf-16-be") if tree == "joliet" else raw_name.decode("ascii")
            if tree in ("joliet", "rockridge") and not flags & 2:
                name = name.rsplit(";", 1)[0]
            if tree == "rockridge":
                su_start = 33 + name_len + (1 - name_len % 2)
                parts = [body[1:] for sig, body in _susp_entries(iso, rec[su_start:]) if sig == b"NM"]
                assert parts, f"no Rock Ridge NM entry for {prefix}{name}"
                name = b"".join(parts).decode("utf-8")
            path = prefix + name
            if flags & 2:
                walk(rec_extent, rec_size, path + "/")
            else:
                files[path] = (rec_extent, rec_size)

    walk(_both_endian32(root, 2), _both_endian32(root, 10), "")
    return files


def file_bytes(iso: bytes, location: tuple[int, int]) -> bytes:
    extent, size = location
    return iso[extent * SECTOR : extent * SECTOR + size]


def volume_label(iso: bytes, which: str = "primary") -> str:
    vd = volume_descriptors(iso)[which]
    raw = vd[40:72]
    return (raw.decode("utf-16-be") if which == "joliet" else raw.decode("ascii")).rstrip(" \x00")


def vendor_parts(message: str) -> list[tuple[str, str]]:
    """The parts of the password vendor data (a MIME multipart message, as cloud-init reads it), read with the
    standard library's own MIME parser: (content type, text) each."""
    import email

    parsed = email.message_from_string(message)
    assert parsed.is_multipart(), message[:200]
    return [(p.get_content_type(), p.get_payload(decode=True).decode("utf-8")) for p in parsed.get_payload()]

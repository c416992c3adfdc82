"""What a drive's content looks like to people and to --json: a summary (status, audit), and the whole content
with the password masked unless asked for (inspect, Ansible's diff)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from .vmdata import VmData

MASK = "********"


def summary(data: VmData, label: str | None = None) -> dict[str, Any]:
    """Who the drive is for and how much it holds; nothing secret. ``label``: the ISO's, when it is not the VM
    data's config-drive label (a NoCloud seed's ``cidata``)."""
    return {
        "label": label or data.label,
        "vm_id": data.vm_id,
        "instance_id": data.metadata.get("instance-id"),
        "hostname": data.hostname,
        "public_keys": len(data.public_keys),
        "userdata_bytes": len(data.userdata or b""),
        "password_set": bool(data.password),
    }


def describe(
    data: VmData, paths: Sequence[str] | None = None, show_password: bool = False, label: str | None = None
) -> dict[str, Any]:
    """Everything the drive says; the password masked (also where it is repeated) unless ``show_password``."""
    hide = data.password if data.password and not show_password else None
    out: dict[str, Any] = {
        **summary(data, label),
        "public_keys": list(data.public_keys),
        "metadata": dict(data.metadata),
        # a foreign drive may repeat the password in a form the layout does not recognise as its own
        "vendor_data": _masked(data.vendor_data, hide) if hide else data.vendor_data,
        "network_data": data.network_data,
    }
    if data.userdata is not None:
        try:
            text = data.userdata.decode("utf-8")
            out["userdata"] = text.replace(hide, MASK) if hide else text
        except UnicodeDecodeError:
            out["userdata_base64"] = base64.b64encode(data.userdata).decode("ascii")
    if data.password:
        out["password"] = MASK if hide else data.password
    if paths is not None:
        out["files"] = list(paths)
    return out


def _masked(obj: Any, secret: str) -> Any:
    return json.loads(json.dumps(obj, ensure_ascii=False).replace(json.dumps(secret, ensure_ascii=False)[1:-1], MASK))

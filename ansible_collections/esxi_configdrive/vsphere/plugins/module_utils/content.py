"""The drive's content from the module's options, built the way the CLI builds it from its flags: the VM data
(``vmdata`` or ``vmdata_file``), then the field overrides, each replacing the field it names. Errors name the
module's option, not the CLI's flag."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

with contextlib.suppress(ImportError):  # reported by common.require_package
    from esxi_configdrive import ValidationError, VmData
    from esxi_configdrive.vmdata import ContentChange

OVERRIDE_OPTIONS = ("userdata", "vm_password", "ssh_keys", "local_hostname", "network")
CONTENT_OPTIONS = ("vmdata", "vmdata_file", *OVERRIDE_OPTIONS, "label")
# A VmData field (as ValidationError names it) -> the option that sets it.
_OPTION_OF_FIELD = {"password": "vm_password", "metadata.local-hostname": "local_hostname"}
_KEYS_FIELD = "metadata.public-keys"


def vmdata_spec() -> dict[str, Any]:
    """``vmdata``: the VM data file's keys (docs/format.md), the password no_log."""
    return {
        "metadata": {"type": "dict"},
        "userdata": {"type": "str"},
        "userdata_base64": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "vendor_data": {"type": "dict"},
        "network_data": {"type": "dict"},
        "network": {"type": "dict"},
        "openstack_metadata": {"type": "dict"},
    }


def content_spec() -> dict[str, Any]:
    return {
        "vmdata": {"type": "dict", "options": vmdata_spec()},
        "vmdata_file": {"type": "path"},
        "userdata": {"type": "str"},
        "vm_password": {"type": "str", "no_log": True},
        "ssh_keys": {"type": "list", "elements": "str", "no_log": False},
        "local_hostname": {"type": "str"},
        "network": {"type": "dict"},
        "label": {"type": "str"},
    }


def given(params: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if params.get(name) is not None]


def without_none(obj: dict[str, Any]) -> dict[str, Any]:
    """Ansible fills sub-options that were not given with None; the VM data format has no nulls."""
    return {k: v for k, v in obj.items() if v is not None}


def overrides(params: dict[str, Any]) -> dict[str, Any]:
    """``VmData.with_overrides`` arguments from the override options (the CLI's ``content_overrides``)."""
    out: dict[str, Any] = {}
    if params.get("userdata") is not None:
        out["userdata"] = params["userdata"].encode("utf-8")
    if params.get("vm_password") is not None:
        out["password"] = params["vm_password"]
    if params.get("ssh_keys") is not None:
        out["public_keys"] = list(params["ssh_keys"])
    if params.get("local_hostname") is not None:
        out["hostname"] = params["local_hostname"]
    if params.get("network") is not None:
        out["network"] = params["network"]
    return out


def load(params: dict[str, Any]) -> VmData | None:
    """The whole content when ``vmdata``/``vmdata_file`` is given (with the overrides and label applied,
    validated), else None."""
    if params.get("vmdata") is not None:
        data = _parsed("vmdata", lambda: VmData.from_object(without_none(params["vmdata"])))
    elif params.get("vmdata_file"):
        data = _parsed("vmdata_file", lambda: VmData.from_file(params["vmdata_file"]))
    else:
        return None
    return _with_options(data, params)


def layout_options(params: dict[str, Any]) -> dict[str, Any]:
    """``ConfigDriveController.update``'s ``options=`` from the module's (the CLI's ``layout_options``)."""
    return {"label": params["label"]} if params.get("label") else {}


def content_change(params: dict[str, Any]) -> ContentChange:
    """For a change to the current drive: the package's ``ContentChange`` from the override and layout options,
    checked now (a bad one named by its option), before anything is sent to vSphere."""
    with _named_by_option():
        return ContentChange.parse(overrides(params), layout_options(params))


def _with_options(data: VmData, params: dict[str, Any]) -> VmData:
    with _named_by_option():
        data = data.with_overrides(**overrides(params))
        if params.get("label"):
            data.label = params["label"]
            data.validate()
    return data


@contextlib.contextmanager
def _named_by_option() -> Iterator[None]:
    """A bad field reported under the module's option that sets it."""
    try:
        yield
    except ValidationError as e:
        raise ValidationError(option_of(e.field), e.message) from None


def option_of(field: str) -> str:
    if field.startswith(_KEYS_FIELD):
        return "ssh_keys" + field[len(_KEYS_FIELD) :]
    return _OPTION_OF_FIELD.get(field, field)


def _parsed(option: str, parse: Any) -> VmData:
    try:
        return parse()
    except ValidationError as e:
        field = option if e.field == "vmdata" else f"{option}.{e.field}"
        raise ValidationError(field, e.message) from None

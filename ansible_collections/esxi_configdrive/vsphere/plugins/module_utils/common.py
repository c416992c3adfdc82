"""What both modules share: the connection options, the package import guard, the session and the controller,
naming the VM, and how a failure becomes ``fail_json``.

The modules are a thin front: every operation is the esxi-configdrive package's own (what the CLI runs).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    from esxi_configdrive import ConfigDriveController, ValidationError
    from esxi_configdrive.errors import describe_failure
    from esxi_configdrive.fields import VM_MOID_RE, VM_UUID_RE
    from esxi_configdrive.vsphere.connection import ConnectionSettings, Session
    from esxi_configdrive.vsphere.settings import normalize_thumbprint
except ImportError as exc:  # the sanity tests import the modules where the package is not installed
    IMPORT_ERROR: str | None = str(exc)
else:
    IMPORT_ERROR = None

PACKAGE = "esxi-configdrive"
# The CLI's names for fields that are options here under another name.
_CLI_FIELDS = {"ca-file": "ca_file", "network-data": "network_data", "admin-pass": "admin_pass"}


def connection_spec() -> dict[str, Any]:
    """The options of the ``connection`` doc fragment, with community.vmware's environment fallbacks."""
    return {
        "hostname": {"type": "str", "fallback": (env_fallback, ["VMWARE_HOST"])},
        "username": {"type": "str", "aliases": ["admin", "user"], "fallback": (env_fallback, ["VMWARE_USER"])},
        "password": {
            "type": "str",
            "aliases": ["pass", "pwd"],
            "no_log": True,
            "fallback": (env_fallback, ["VMWARE_PASSWORD"]),
        },
        "port": {"type": "int", "default": 443, "fallback": (env_fallback, ["VMWARE_PORT"])},
        "validate_certs": {"type": "bool", "default": True, "fallback": (env_fallback, ["VMWARE_VALIDATE_CERTS"])},
        "ca_file": {"type": "path"},
        "thumbprint": {"type": "str"},
    }


def vm_spec() -> dict[str, Any]:
    """One VM: ``name`` (optionally under ``folder``), ``uuid`` or ``moid``."""
    return {
        "name": {"type": "str"},
        "uuid": {"type": "str"},
        "moid": {"type": "str"},
        "folder": {"type": "str"},
        "datacenter": {"type": "str"},
    }


def require_package(module: AnsibleModule) -> None:
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(PACKAGE), import_error=IMPORT_ERROR)


def settings(params: dict[str, Any]) -> ConnectionSettings:
    """Connection settings from the options; bad or missing values raise ValidationError naming the option."""
    for option, variable in (("hostname", "VMWARE_HOST"), ("username", "VMWARE_USER"), ("password", "VMWARE_PASSWORD")):
        if not params[option]:
            raise ValidationError(option, f"required (the option, or the environment variable {variable})")
    host = params["hostname"].strip()
    if not host or re.search(r"[/\s]", host):
        raise ValidationError("hostname", "a host name or address, without scheme or path")
    if host.count(":") == 1:  # one colon: host:port (an IPv6 address has more)
        raise ValidationError("hostname", "a host name or address without the port (give that as port)")
    if not 0 < params["port"] < 65536:
        raise ValidationError("port", "must be between 1 and 65535")
    ca_file = params["ca_file"]
    if ca_file and not os.path.isfile(ca_file):
        raise ValidationError("ca_file", f"{ca_file} does not exist")
    thumbprint = params["thumbprint"]
    return ConnectionSettings(
        host=host.strip("[]"),  # an IPv6 address may come bracketed, as in a URL
        port=params["port"],
        username=params["username"],
        password=params["password"],
        ca_file=ca_file or None,
        thumbprint=normalize_thumbprint(thumbprint) if thumbprint else None,
        insecure=not params["validate_certs"],
        datacenter=params.get("datacenter") or None,
    )


def vm_identity(params: dict[str, Any]) -> tuple[str, str] | None:
    """(the option that names the VM, what the package looks it up by), or None when no VM is named."""
    if params.get("moid"):
        if not VM_MOID_RE.match(params["moid"]):
            raise ValidationError("moid", "a VM's managed object id, such as vm-42")
        return "moid", params["moid"]
    if params.get("uuid"):
        if not VM_UUID_RE.match(params["uuid"].strip()):
            raise ValidationError("uuid", "a VM's instance UUID (or BIOS UUID), such as 5003e5c0-…")
        return "uuid", params["uuid"].strip()
    if params.get("name"):
        folder = (params.get("folder") or "").strip("/")
        return "name", f"{folder}/{params['name']}" if folder else params["name"]
    return None


@contextlib.contextmanager
def controller(params: dict[str, Any], **options: Any) -> Iterator[ConfigDriveController]:
    """One logged-in session and the package's controller on it; logged out afterwards, whatever happens."""
    with Session(settings(params)) as session:  # vms: share its reads and task polls (the package's batch mode)
        yield ConfigDriveController(session, **options)


def fail(module: AnsibleModule, error: BaseException, vm_option: str = "name", **result: Any) -> NoReturn:
    """``fail_json`` with the CLI's one-line message; bad input names the option it is about. No traceback."""
    if isinstance(error, ValidationError):
        field = vm_option if error.field == "vm" else _CLI_FIELDS.get(error.field, error.field)
        module.fail_json(msg=one_line(f"{field}: {error.message}"), field=field, **result)
    message, status = describe_failure(error)
    module.fail_json(msg=one_line(message), exit_status=status, **result)
    raise SystemExit(1)  # not reached: fail_json exits (ansible-core has no types to say so)


def one_line(text: str) -> str:
    return " ".join(text.split())

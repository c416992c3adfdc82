"""The commands that need no vCenter: build and inspect. Nothing here imports a vSphere library."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from typing import Any

from ..content import describe
from ..errors import ValidationError
from ..network import require_macs
from ..network_options import NETWORK_OPTIONS, as_option_error
from ..transport import Transport, check_label_for, parse_transport, transport_field
from ..vmdata import NETWORK_DATA_FIELDS, VmData, check_network_choice
from .options import add_content_options, add_network_data_option, add_transport_option, load_vmdata


def add_local_commands(sub: Any) -> None:
    p = sub.add_parser("build", help="build a config drive ISO from VM data")
    add_content_options(p, vmdata_required=True)
    add_network_data_option(p, "build")
    add_transport_option(p, "build")
    p.add_argument("-o", "--output", required=True, metavar="OUT.iso", help="where to write the ISO ('-': stdout)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="show what a config drive ISO holds")
    p.add_argument("iso", metavar="ISO")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--show-password", action="store_true", help="print the password instead of a mask")
    p.set_defaults(func=cmd_inspect)


def cmd_build(args: argparse.Namespace) -> dict[str, Any] | None:
    from ..iso import build_iso, iso_digest

    data = load_vmdata(args)
    if args.network_data != "file":
        check_network_choice(args.network_data, data.network, data.network_data)
    if data.network is not None and any(getattr(args, key) for key in NETWORK_OPTIONS):
        try:  # a drive for no VM needs each NIC's MAC: name the option that gives it
            require_macs(data.network)
        except ValidationError as e:
            raise as_option_error(e, data.network) from None
    data = data.copy(**NETWORK_DATA_FIELDS.get(args.network_data, {}))
    transport = parse_transport(args.transport)
    check_label_for(transport, args.label)
    if transport is Transport.GUESTINFO:
        return build_guestinfo(data, args)
    iso = build_iso(data, max_userdata_bytes=args.max_userdata_bytes, transport=transport)
    if args.output == "-":
        sys.stdout.buffer.write(iso)
        sys.stdout.flush()
        return None  # the ISO went to stdout; nothing else may
    write_file_atomically(args.output, iso)
    return {
        "changed": True,
        "output": args.output,
        "bytes": len(iso),
        "sha256": iso_digest(iso),
        "label": data.label,
        "vm_id": data.vm_id,
        **transport_field(transport),
    }


def build_guestinfo(data: VmData, args: argparse.Namespace) -> dict[str, Any] | None:
    """``build --transport guestinfo``: the keys as one JSON object, ready for Terraform's ``extra_config`` or
    Packer's ``configuration_parameters`` (the keys set only: a key another tool never set needs no "" to clear
    it). The output names the keys, never their values."""
    from ..drive.keys import password_warning, refuse_unasked_password
    from ..guestinfo import VENDORDATA, guestinfo_keys, redacted

    data.validate(args.max_userdata_bytes)
    refuse_unasked_password(data.password, args.guestinfo_password)
    keys = {k: v for k, v in guestinfo_keys(data, password=args.guestinfo_password).items() if v}
    text = json.dumps(keys, indent=2, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return None  # the keys went to stdout; nothing else may
    write_file_atomically(args.output, text.encode("utf-8"))
    out: dict[str, Any] = {"changed": True, "output": args.output, "bytes": len(text.encode("utf-8"))}
    out.update(vm_id=data.vm_id, transport=Transport.GUESTINFO.value, keys=sorted(keys))
    if data.password and args.guestinfo_password:
        out["warnings"] = [password_warning(n for n in redacted(keys) if n == VENDORDATA)]
    return out


def write_file_atomically(path: str, content: bytes, mode: int = 0o600) -> None:
    """Write to a temporary name beside ``path`` and rename: a failure leaves no partial file.
    Mode 0600: the drive holds the VM's password."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".esxi-configdrive-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cmd_inspect(args: argparse.Namespace) -> dict[str, Any]:
    from ..iso import iso_to_tree
    from ..transport import read_drive_tree

    tree = iso_to_tree(args.iso)
    transport, data = read_drive_tree(tree)
    described = describe(data, tree.all_paths(), args.show_password, tree.label)
    return {"changed": False, "iso": args.iso, **described, **transport_field(transport)}

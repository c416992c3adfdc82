"""The command line. Human output by default, one JSON object with --json; exit 0 done, 1 failure, 2 bad input.

Only what a command needs is imported: ``build`` and ``inspect`` never import pyVmomi, so they start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, describe_failure
from .vmdata import (
    DEFAULT_MAX_USERDATA_BYTES,
    ValidationError,
    VmData,
    read_password_file,
    read_ssh_key_file,
    read_userdata_file,
)

MASK = "********"
log = logging.getLogger("esxi_configdrive")


class UsageError(Exception):
    """Bad command-line input found after parsing (exit status 2)."""


# ---- shared option groups ---------------------------------------------------------------------------------


def _add_content_options(p: argparse.ArgumentParser, vmdata_required: bool) -> None:
    g = p.add_argument_group("drive content")
    g.add_argument(
        "--vmdata",
        metavar="FILE",
        required=vmdata_required,
        help="VM data file: JSON or YAML, or CloudStack's [directory, file, content] list",
    )
    g.add_argument("--userdata-file", metavar="FILE", help="user data (replaces the file's); '-' for stdin")
    g.add_argument(
        "--password-file",
        metavar="FILE",
        help="the VM password, from a file ('-' for stdin); never give it on the command line",
    )
    g.add_argument(
        "--ssh-key-file",
        metavar="FILE",
        action="append",
        help="SSH public keys, one per line (repeatable; replaces the file's keys)",
    )
    g.add_argument("--hostname", help="the guest's host name (metadata local-hostname)")
    g.add_argument("--label", help="volume label (default: config-2, or the current drive's on update)")
    g.add_argument(
        "--no-password-vendor-data",
        dest="password_vendor_data",
        action="store_false",
        default=None,
        help="don't repeat the password as cloud-config in vendor_data.json",
    )
    g.add_argument(
        "--admin-pass",
        choices=("auto", "yes", "no"),
        default="auto",
        help="put the password in meta_data.json's admin_pass, for cloudbase-init (Windows); auto: yes for build "
        "and for Windows VMs, no for other guests (cloud-init would copy it into a world-readable file)",
    )
    g.add_argument(
        "--dated-versions",
        action="store_true",
        default=None,
        help="also write nova's dated openstack/<date>/ folders (as hard links)",
    )
    g.add_argument(
        "--max-userdata-bytes",
        type=int,
        default=DEFAULT_MAX_USERDATA_BYTES,
        metavar="N",
        help=f"limit on decoded user data (default {DEFAULT_MAX_USERDATA_BYTES})",
    )


def content_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The --userdata-file/--password-file/--ssh-key-file/--hostname values, read and checked."""
    out: dict[str, Any] = {}
    if args.userdata_file:
        out["userdata"] = read_userdata_file(args.userdata_file, args.max_userdata_bytes)
    if args.password_file:
        out["password"] = read_password_file(args.password_file)
    if args.ssh_key_file:
        out["public_keys"] = [k for path in args.ssh_key_file for k in read_ssh_key_file(path)]
    if args.hostname is not None:
        out["hostname"] = args.hostname
    return out


def apply_content_options(data: VmData, args: argparse.Namespace) -> VmData:
    """VM data with the command line's overrides and build options applied, validated."""
    data = data.with_overrides(**content_overrides(args), max_userdata_bytes=args.max_userdata_bytes)
    if args.label:
        data.label = args.label
    if args.password_vendor_data is not None:
        data.password_vendor_data = args.password_vendor_data
    if args.admin_pass != "auto":
        data.admin_pass = args.admin_pass == "yes"
    if args.dated_versions is not None:
        data.dated_versions = args.dated_versions
    if getattr(args, "network_data", None) == "empty":
        data.empty_network_data = True
    data.validate(max_userdata_bytes=args.max_userdata_bytes)
    return data


def load_vmdata(args: argparse.Namespace) -> VmData:
    data = VmData.from_file(args.vmdata, max_userdata_bytes=args.max_userdata_bytes)
    return apply_content_options(data, args)


# ---- build / inspect --------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> dict[str, Any]:
    from .iso import build_iso, iso_digest

    data = load_vmdata(args)
    iso = build_iso(data, max_userdata_bytes=args.max_userdata_bytes)
    if args.output == "-":
        sys.stdout.buffer.write(iso)
        sys.stdout.flush()
    else:
        write_file_atomically(args.output, iso)
    return {
        "changed": True,
        "output": args.output,
        "bytes": len(iso),
        "sha256": iso_digest(iso),
        "label": data.label,
        "vm_id": data.vm_id,
    }


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
    from .iso import iso_to_tree
    from .layout import parse_tree

    tree = iso_to_tree(args.iso)
    data = parse_tree(tree)
    return {"changed": False, "iso": args.iso, **describe(data, tree.all_paths(), args.show_password)}


def describe(data: VmData, paths: Sequence[str] | None, show_password: bool) -> dict[str, Any]:
    """What a drive says, for humans and --json; the password masked unless asked for."""
    out: dict[str, Any] = {
        "label": data.label,
        "vm_id": data.vm_id,
        "instance_id": data.metadata.get("instance-id"),
        "hostname": data.hostname,
        "metadata": dict(data.metadata),
        "public_keys": list(data.public_keys),
        "userdata_bytes": len(data.userdata or b""),
        "password_set": bool(data.password),
        "vendor_data": data.vendor_data,
        "network_data": data.network_data,
    }
    if data.password and not show_password:
        # a foreign drive may repeat the password in a form the layout does not recognise as its own
        out["vendor_data"] = _masked(data.vendor_data, data.password)
    if data.userdata is not None:
        try:
            out["userdata"] = data.userdata.decode("utf-8")
            if data.password and not show_password:
                out["userdata"] = out["userdata"].replace(data.password, MASK)
        except UnicodeDecodeError:
            import base64

            out["userdata_base64"] = base64.b64encode(data.userdata).decode("ascii")
    if data.password:
        out["password"] = data.password if show_password else MASK
    if paths is not None:
        out["files"] = list(paths)
    return out


def _masked(obj: Any, secret: str) -> Any:
    return json.loads(json.dumps(obj, ensure_ascii=False).replace(json.dumps(secret, ensure_ascii=False)[1:-1], MASK))


# ---- output -----------------------------------------------------------------------------------------------


# Control characters, and Unicode's bidirectional overrides, from hostile input (a metadata key, a VM name)
# would reach the admin's terminal as they are: shown escaped instead.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(m: re.Match[str]) -> str:
    return ascii(m.group())[1:-1]  # '\x00', '\u202e'


def print_human(result: dict[str, Any], stream: Any = None) -> None:
    stream = stream or sys.stdout
    for key, value in result.items():
        if value is None or value == {} or value == []:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False, indent=2)
        elif isinstance(value, str) and "\n" in value:
            value = "\n  " + value.rstrip("\n").replace("\n", "\n  ")
        text = _UNPRINTABLE_IN_TEXT.sub(_escaped, f"{key.replace('_', ' ')}: {value}")  # a drive's content is input
        print(text, file=stream)


# ---- parser -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esxi-configdrive",
        description="Build config drives (ISO 9660, label config-2) and manage them on vSphere VMs.",
        epilog="Exit status: 0 done, 1 vSphere or runtime failure, 2 bad input. See docs/usage.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("build", help="build a config drive ISO from VM data")
    _add_content_options(p, vmdata_required=True)
    p.add_argument(
        "--network-data",
        choices=("file", "empty"),
        default="file",
        help="file: the VM data's network data (none: no network_data.json, the guest uses DHCP); "
        "empty: write CloudStack's {} (cloud-init then configures no network)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.iso", help="where to write the ISO ('-': stdout)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="show what a config drive ISO holds")
    p.add_argument("iso", metavar="ISO")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--show-password", action="store_true", help="print the password instead of a mask")
    p.set_defaults(func=cmd_inspect)

    try:
        from .cli_vsphere import add_vsphere_commands
    except ImportError:  # pragma: no cover - the module ships with the package
        pass
    else:
        add_vsphere_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    as_json = getattr(args, "json", False)
    try:
        result = args.func(args)
    except (ValidationError, UsageError) as e:
        return _fail(str(e), EXIT_BAD_INPUT, as_json)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_FAILURE, as_json)
    except Exception as e:
        message, status = describe_failure(e)
        log.debug("failure", exc_info=True)
        return _fail(message, status, as_json)
    if isinstance(result, int):
        return result  # the command printed its own output (batch mode: one JSON line per VM)
    if getattr(args, "output", None) == "-":
        return EXIT_OK  # the ISO went to stdout; nothing else may
    if as_json:
        print(json.dumps(result, ensure_ascii=False, sort_keys=False))
    else:
        print_human(result)
    return EXIT_OK


def _fail(message: str, status: int, as_json: bool) -> int:
    message = " ".join(message.split())  # one line, whatever the cause produced
    message = _UNPRINTABLE.sub(_escaped, message)
    if as_json:
        # bad input changed nothing; after a vSphere failure the message says what state the VM is in
        changed = False if status == EXIT_BAD_INPUT else None
        print(json.dumps({"changed": changed, "error": message, "exit_status": status}))
    print(f"esxi-configdrive: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The vSphere commands: attach, update, reset-password, detach, remove, prepare-migration, status, and batch
mode for the first four. Each turns its options into a ``dispatch.Request`` (input is read and checked before
any connection is made), then connects and runs it. vSphere libraries are imported only when a command runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import dispatch
from ..defaults import (
    CONTROLLER_CHOICES,
    DEFAULT_MAX_USERDATA_BYTES,
    PASSWORD_LENGTH,
)
from ..errors import ValidationError
from ..fields import check_concurrency, check_password_length
from ..network_options import NETWORK_OPTIONS
from ..vmdata import VmData
from .options import (
    add_content_options,
    add_network_data_option,
    add_transport_option,
    add_vm_options,
    connection_settings,
    content_overrides,
    layout_options,
    load_vmdata,
)
from .output import print_json_line

BATCH_COMMANDS = ("attach", "update", "detach", "remove")
# Per-line content: silently ignoring these options on a batch would be worse than refusing them.
CONTENT_OPTIONS = ("vmdata", "userdata_file", "password_file", "ssh_key_file", "hostname", "label", *NETWORK_OPTIONS)
NEW_INSTANCE_ID_HELP = (
    "make the drive's vm-id the VM's own instance UUID, whatever the data says: a clone gets an id of its own, so "
    "cloud-init provisions it again (docs/operations.md, cloning)"
)
LAYOUT_FLAGS = ("password_vendor_data", "dated_versions")


def add_vsphere_commands(sub: Any) -> None:
    p = sub.add_parser("attach", help="attach a config drive as the VM's second CD-ROM")
    add_vm_options(p, batch=True)
    add_content_options(p, vmdata_required=False)
    p.add_argument("--datastore", help="datastore for the ISO (else GOVC_DATASTORE, else the VM's own)")
    p.add_argument(
        "--controller",
        choices=CONTROLLER_CHOICES,
        default="auto",
        help="auto: IDE when the VM is off and a slot is free, else SATA",
    )
    add_network_data_option(p, "attach")
    add_transport_option(p, "attach")
    p.add_argument("--new-instance-id", action="store_true", help=NEW_INSTANCE_ID_HELP)
    p.add_argument(
        "--avoid-lock-question",
        action="store_true",
        help="set cdrom.showIsoLockWarning=FALSE and msg.autoanswer=TRUE on the VM",
    )
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("update", help="change the drive's content: user data, password, SSH keys …")
    add_vm_options(p, batch=True)
    add_content_options(p, vmdata_required=False)
    add_network_data_option(p, "update")
    add_transport_option(p, "update")
    p.add_argument("--new-instance-id", action="store_true", help=NEW_INSTANCE_ID_HELP)
    p.add_argument("--avoid-lock-question", action="store_true")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("reset-password", help="put a new random password on the drive and print it once")
    add_vm_options(p)
    p.add_argument("--length", type=int, default=PASSWORD_LENGTH, help=f"password length (default {PASSWORD_LENGTH})")
    p.add_argument("--avoid-lock-question", action="store_true")
    p.set_defaults(func=cmd_reset_password)

    p = sub.add_parser("detach", help="VM stopped: disconnect the drive, then delete its ISO")
    add_vm_options(p, batch=True)
    p.set_defaults(func=cmd_detach)

    p = sub.add_parser("remove", help="VM expunged: remove the drive, its ISO and folder")
    add_vm_options(p, batch=True)
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("prepare-migration", help="make the ISO reachable from another host")
    add_vm_options(p)
    p.add_argument("--host", required=True, help="the host the VM will move to")
    p.add_argument("--datastore", help="copy the ISO here (it must be mounted on the host)")
    p.add_argument("--migrate", action="store_true", help="then migrate the VM to the host")
    p.set_defaults(func=cmd_prepare_migration)

    p = sub.add_parser("status", help="show the VM's config drive: device, backing, file, content")
    add_vm_options(p, changes=False)
    p.set_defaults(func=cmd_status)


# ---- the commands: options -> request (cli.main runs it) ------------------------------------------------


def cmd_attach(args: argparse.Namespace) -> dispatch.Request | int:
    if args.batch is not None:
        return run_batch_command(args, "attach")
    _need_vm(args, "attach")
    if not args.vmdata:
        raise ValidationError("vmdata", "attach needs --vmdata FILE")
    request = dispatch.Request(
        args.vm,
        data=load_vmdata(args),
        datastore=args.datastore,
        controller=args.controller,
        network_data=_network_data_unless_default(args.network_data),
        new_instance_id=args.new_instance_id,
        dry_run=args.dry_run,
        transport=args.transport,
        guestinfo_password=args.guestinfo_password,
    )
    return request


def cmd_update(args: argparse.Namespace) -> dispatch.Request | int:
    if args.batch is not None:
        return run_batch_command(args, "update")
    _need_vm(args, "update")
    data = VmData.from_file(args.vmdata, max_userdata_bytes=args.max_userdata_bytes) if args.vmdata else None
    options = layout_options(args)
    request = dispatch.Request(
        args.vm,
        data=data,
        overrides=content_overrides(args),
        options=options,
        network_data=_network_data_unless_default(args.network_data),
        new_instance_id=args.new_instance_id,
        dry_run=args.dry_run,
        transport=args.transport,
        guestinfo_password=args.guestinfo_password,
    )
    if not dispatch.has_change(request):
        raise ValidationError(
            "update",
            "nothing to change: give --vmdata, --userdata-file, --password-file, --ssh-key-file, --ip …",
        )
    if "label" in options:
        from ..fields import check_label

        check_label(options["label"])
    return request


def cmd_reset_password(args: argparse.Namespace) -> dispatch.Request:
    check_password_length(args.length)
    return dispatch.Request(args.vm, length=args.length, dry_run=args.dry_run)


def cmd_detach(args: argparse.Namespace) -> dispatch.Request | int:
    return _simple(args, "detach")


def cmd_remove(args: argparse.Namespace) -> dispatch.Request | int:
    return _simple(args, "remove")


def cmd_prepare_migration(args: argparse.Namespace) -> dispatch.Request:
    request = dispatch.Request(
        args.vm, host=args.host, datastore=args.datastore, migrate=args.migrate, dry_run=args.dry_run
    )
    return request


def cmd_status(args: argparse.Namespace) -> dispatch.Request:
    return dispatch.Request(args.vm)


def _simple(args: argparse.Namespace, command: str) -> dispatch.Request | int:
    if args.batch is not None:
        return run_batch_command(args, command)
    _need_vm(args, command)
    return dispatch.Request(args.vm, dry_run=args.dry_run)


def _need_vm(args: argparse.Namespace, command: str) -> None:
    if not args.vm:
        raise ValidationError("vm", f"name the VM, or give --batch FILE ({command})")


def _network_data_unless_default(network_data: str) -> str | None:
    """The --network-data choice, None for the command's default (file, keep)."""
    return None if network_data in ("file", "keep") else network_data


# ---- running ------------------------------------------------------------------------------------------------


def run_request(args: argparse.Namespace, command: str, request: dispatch.Request) -> dict[str, Any]:
    """Check what needs no vSphere, connect, run, disconnect (``cli.main`` runs the request a command returns:
    one frame less under every vSphere call)."""
    from ..vsphere.connection import Session

    call = dispatch.parse(command, request, getattr(args, "max_userdata_bytes", DEFAULT_MAX_USERDATA_BYTES))
    with Session(connection_settings(args)) as session:
        return controller_for(session, args).run(call).to_dict()


def controller_for(session: Any, args: argparse.Namespace) -> Any:
    """The controller the command line's options ask for."""
    from ..controller import ConfigDriveController

    return ConfigDriveController(
        session,
        force_eject=getattr(args, "force_eject", False),
        avoid_lock_question=getattr(args, "avoid_lock_question", False),
        task_timeout=args.task_timeout,
        admin_pass=getattr(args, "admin_pass", "auto"),
        max_userdata_bytes=getattr(args, "max_userdata_bytes", DEFAULT_MAX_USERDATA_BYTES),
    )


def run_batch_command(args: argparse.Namespace, command: str) -> int:
    """``--batch FILE``: one JSON line in and one out per VM, on one session; returns the exit status."""
    from ..batch import Progress, batch_defaults, read_batch, run_batch
    from ..vsphere.connection import Session

    if args.vm:
        raise ValidationError("vm", "give a VM or --batch, not both")
    check_concurrency(args.concurrency)
    given = [k for k in CONTENT_OPTIONS if getattr(args, k, None)]
    given += [k for k in LAYOUT_FLAGS if getattr(args, k, None) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ValidationError(flag.lstrip("-"), f"{flag} does not apply with --batch: put the content on each line")
    defaults = batch_defaults(
        dry_run=args.dry_run,
        new_instance_id=getattr(args, "new_instance_id", False),
        datastore=getattr(args, "datastore", None),
        controller=getattr(args, "controller", None),
        network_data=_network_data_unless_default(getattr(args, "network_data", "file")),
        transport=getattr(args, "transport", None),
        guestinfo_password=getattr(args, "guestinfo_password", False),
    )
    stream = sys.stdin if args.batch == "-" else _open_batch(args.batch)
    with stream, Session(connection_settings(args)) as session:
        summary = run_batch(
            controller_for(session, args),
            command,
            read_batch(stream, command, getattr(args, "max_userdata_bytes", DEFAULT_MAX_USERDATA_BYTES)),
            concurrency=args.concurrency,
            defaults=defaults,
            on_result=print_json_line,
            progress=Progress(),
        )
    return summary.exit_status


def _open_batch(path: str) -> Any:
    try:
        return open(path, encoding="utf-8")
    except OSError as e:
        raise ValidationError("batch", f"cannot read {path}: {e.strerror or e}") from None

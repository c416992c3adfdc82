"""The vSphere commands of the command line: attach, update, reset-password, detach, remove, prepare-migration,
status. Imported only when one of them runs (``build``/``inspect`` stay free of pyVmomi)."""

from __future__ import annotations

import argparse
from typing import Any

from .vmdata import DEFAULT_MAX_USERDATA_BYTES, ValidationError, VmData

# What update's --network-data empty|none changes on the drive (auto is resolved against the VM's NICs).
NETWORK_DATA_OPTIONS = {
    "empty": {"empty_network_data": True, "network_data": {}},
    "none": {"empty_network_data": False, "network_data": {}},
}


def add_connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vCenter connection (else GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD, GOVC_INSECURE, …)")
    g.add_argument("--url", help="[https://][user@]host[:port][/sdk] (no password here: it would show in ps)")
    g.add_argument("--username", help="user name (else GOVC_USERNAME or the URL's)")
    g.add_argument("--vc-password-file", metavar="FILE", help="vCenter password from a file (else GOVC_PASSWORD)")
    g.add_argument("--ca-file", metavar="PEM", help="trust this CA bundle (else GOVC_TLS_CA_CERTS)")
    g.add_argument("--thumbprint", help="trust the certificate with this SHA-1/SHA-256 thumbprint only")
    g.add_argument("--insecure", action="store_true", default=None, help="do not verify TLS (else GOVC_INSECURE)")
    g.add_argument("--datacenter", help="datacenter for inventory paths and lookups (else GOVC_DATACENTER)")
    g.add_argument("--task-timeout", type=float, default=600.0, metavar="SECONDS", help="wait this long per task")


def _common(p: argparse.ArgumentParser, changes: bool = True, batch: bool = False) -> None:
    if batch:
        p.add_argument("vm", metavar="VM", nargs="?", help="name, inventory path, instance/BIOS UUID or id (vm-42)")
        g = p.add_argument_group("batch mode")
        g.add_argument("--batch", metavar="FILE", help="JSON lines, one VM per line ('-': stdin); see docs/usage.md")
        g.add_argument("--concurrency", type=int, default=4, metavar="N", help="VMs at a time (default 4)")
    else:
        p.add_argument("vm", metavar="VM", help="name, inventory path, instance/BIOS UUID or id (vm-42)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    if changes:
        p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
        p.add_argument(
            "--force-eject",
            action="store_true",
            help="answer the guest's locked-CD-ROM question with yes (the guest loses the mounted drive)",
        )
    add_connection_options(p)


def add_vsphere_commands(sub: Any) -> None:
    from .cli import _add_content_options

    p = sub.add_parser("attach", help="attach a config drive as the VM's second CD-ROM")
    _common(p, batch=True)
    _add_content_options(p, vmdata_required=False)
    p.add_argument("--datastore", help="datastore for the ISO (else GOVC_DATASTORE, else the VM's own)")
    p.add_argument(
        "--controller",
        choices=("auto", "ide", "sata"),
        default="auto",
        help="auto: IDE when the VM is off and a slot is free, else SATA",
    )
    p.add_argument(
        "--network-data",
        choices=("file", "auto", "empty"),
        default="file",
        help="file: the VM data's network data (none: no network_data.json, the guest uses DHCP); auto: DHCP "
        "on every NIC, links with the VM's real MACs; empty: CloudStack's {} (cloud-init configures no network)",
    )
    p.add_argument(
        "--avoid-lock-question",
        action="store_true",
        help="set cdrom.showIsoLockWarning=FALSE and msg.autoanswer=TRUE on the VM",
    )
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("update", help="change the drive's content: user data, password, SSH keys …")
    _common(p, batch=True)
    _add_content_options(p, vmdata_required=False)
    p.add_argument(
        "--network-data",
        choices=("keep", "auto", "empty", "none"),
        default="keep",
        help="keep: the drive's network data stays; auto: DHCP on every NIC with the VM's real MACs; empty: "
        "CloudStack's {}; none: no network_data.json (the guest falls back to DHCP)",
    )
    p.add_argument("--avoid-lock-question", action="store_true")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("reset-password", help="put a new random password on the drive and print it once")
    _common(p)
    p.add_argument("--length", type=int, default=20, help="password length (default 20)")
    p.add_argument("--avoid-lock-question", action="store_true")
    p.set_defaults(func=cmd_reset_password)

    p = sub.add_parser("detach", help="VM stopped: disconnect the drive, then delete its ISO")
    _common(p, batch=True)
    p.set_defaults(func=cmd_detach)

    p = sub.add_parser("remove", help="VM expunged: remove the drive, its ISO and folder")
    _common(p, batch=True)
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("prepare-migration", help="make the ISO reachable from another host")
    _common(p)
    p.add_argument("--host", required=True, help="the host the VM will move to")
    p.add_argument("--datastore", help="copy the ISO here (it must be mounted on the host)")
    p.add_argument("--migrate", action="store_true", help="then migrate the VM to the host")
    p.set_defaults(func=cmd_prepare_migration)

    p = sub.add_parser("status", help="show the VM's config drive: device, backing, file, content")
    _common(p, changes=False)
    p.set_defaults(func=cmd_status)


# ---- running a command ------------------------------------------------------------------------------------


def connection_settings(args: argparse.Namespace):
    from .vsphere.connection import ConnectionSettings

    return ConnectionSettings.from_sources(
        url=args.url,
        username=args.username,
        password_file=args.vc_password_file,
        ca_file=args.ca_file,
        thumbprint=args.thumbprint,
        insecure=args.insecure,
        datacenter=args.datacenter,
    )


def _run(args: argparse.Namespace, operation) -> dict[str, Any]:
    """Validate, connect, run, disconnect. Input is checked before the connection is made."""
    from .controller import ConfigDriveController
    from .vsphere.connection import Session

    settings = connection_settings(args)
    with Session(settings) as session:
        controller = ConfigDriveController(
            session,
            force_eject=getattr(args, "force_eject", False),
            avoid_lock_question=getattr(args, "avoid_lock_question", False),
            task_timeout=args.task_timeout,
            admin_pass=getattr(args, "admin_pass", "auto"),
            max_userdata_bytes=getattr(args, "max_userdata_bytes", DEFAULT_MAX_USERDATA_BYTES),
        )
        return operation(controller).to_dict()


def _batch_or_single(args: argparse.Namespace, command: str) -> int | None:
    """Run the batch when --batch is given (returns the exit status), else check a VM was named."""
    if args.batch is None:
        if not args.vm:
            raise ValidationError("vm", f"name the VM, or give --batch FILE ({command})")
        return None
    if args.vm:
        raise ValidationError("vm", "give a VM or --batch, not both")
    return run_batch_command(args, command)


def run_batch_command(args: argparse.Namespace, command: str) -> int:
    import json
    import sys

    from .batch import Progress, read_batch, run_batch
    from .controller import ConfigDriveController
    from .vsphere.connection import Session

    if not 1 <= args.concurrency <= 64:
        raise ValidationError("concurrency", "must be between 1 and 64")
    per_line = ("vmdata", "userdata_file", "password_file", "ssh_key_file", "hostname", "label")
    given = [k for k in per_line if getattr(args, k, None)]
    given += [k for k in ("password_vendor_data", "dated_versions") if getattr(args, k, None) is not None]
    if given:  # silently ignoring them would be worse than refusing
        flag = "--" + given[0].replace("_", "-")
        raise ValidationError(flag.lstrip("-"), f"{flag} does not apply with --batch: put the content on each line")
    defaults = {"dry_run": args.dry_run}
    for key in ("datastore", "controller"):
        if getattr(args, key, None):
            defaults[key] = getattr(args, key)
    if getattr(args, "network_data", None) in ("auto", "empty", "none"):
        defaults["network_data"] = args.network_data
    settings = connection_settings(args)
    stream = sys.stdin if args.batch == "-" else _open_batch(args.batch)
    with stream, Session(settings) as session:
        session.per_thread_collectors = args.concurrency > 1
        controller = ConfigDriveController(
            session,
            force_eject=args.force_eject,
            avoid_lock_question=getattr(args, "avoid_lock_question", False),
            task_timeout=args.task_timeout,
            admin_pass=getattr(args, "admin_pass", "auto"),
            max_userdata_bytes=getattr(args, "max_userdata_bytes", DEFAULT_MAX_USERDATA_BYTES),
        )

        def emit(result: dict[str, Any]) -> None:
            print(json.dumps(result, ensure_ascii=False), flush=True)

        summary = run_batch(
            controller,
            command,
            read_batch(
                stream, command, max_userdata_bytes=getattr(args, "max_userdata_bytes", DEFAULT_MAX_USERDATA_BYTES)
            ),
            concurrency=args.concurrency,
            defaults=defaults,
            on_result=emit,
            progress=Progress(),
        )
    return summary.exit_status


def _open_batch(path: str):
    try:
        return open(path, encoding="utf-8")
    except OSError as e:
        raise ValidationError("batch", f"cannot read {path}: {e.strerror or e}") from None


def cmd_attach(args: argparse.Namespace) -> dict[str, Any] | int:
    from .cli import load_vmdata

    status = _batch_or_single(args, "attach")
    if status is not None:
        return status
    if not args.vmdata:
        raise ValidationError("vmdata", "attach needs --vmdata FILE")
    data = load_vmdata(args)
    return _run(
        args,
        lambda c: c.attach(
            args.vm,
            data,
            datastore=args.datastore,
            controller=args.controller,
            network_data_auto=args.network_data == "auto",
            dry_run=args.dry_run,
        ),
    )


def cmd_update(args: argparse.Namespace) -> dict[str, Any] | int:
    from .cli import content_overrides

    status = _batch_or_single(args, "update")
    if status is not None:
        return status

    data = VmData.from_file(args.vmdata, max_userdata_bytes=args.max_userdata_bytes) if args.vmdata else None
    overrides = content_overrides(args)
    options = {
        k: v
        for k, v in (
            ("label", args.label),
            ("password_vendor_data", args.password_vendor_data),
            ("dated_versions", args.dated_versions),
        )
        if v is not None
    }
    options.update(NETWORK_DATA_OPTIONS.get(args.network_data, {}))
    if data is None and not overrides and not options and args.network_data == "keep":
        raise ValidationError(
            "update", "nothing to change: give --vmdata, --userdata-file, --password-file, --ssh-key-file …"
        )
    if options.get("label"):
        from .vmdata import check_label

        check_label(options["label"])
    return _run(
        args,
        lambda c: c.update(
            args.vm,
            data=data,
            overrides=overrides,
            options=options,
            network_data_auto=args.network_data == "auto",
            dry_run=args.dry_run,
        ),
    )


def cmd_reset_password(args: argparse.Namespace) -> dict[str, Any]:
    if not 12 <= args.length <= 128:
        raise ValidationError("length", "must be between 12 and 128")
    return _run(args, lambda c: c.reset_password(args.vm, length=args.length, dry_run=args.dry_run))


def cmd_detach(args: argparse.Namespace) -> dict[str, Any] | int:
    status = _batch_or_single(args, "detach")
    if status is not None:
        return status
    return _run(args, lambda c: c.detach(args.vm, dry_run=args.dry_run))


def cmd_remove(args: argparse.Namespace) -> dict[str, Any] | int:
    status = _batch_or_single(args, "remove")
    if status is not None:
        return status
    return _run(args, lambda c: c.remove(args.vm, dry_run=args.dry_run))


def cmd_prepare_migration(args: argparse.Namespace) -> dict[str, Any]:
    return _run(
        args,
        lambda c: c.prepare_migration(
            args.vm, args.host, datastore=args.datastore, migrate=args.migrate, dry_run=args.dry_run
        ),
    )


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    return _run(args, lambda c: c.status(args.vm))

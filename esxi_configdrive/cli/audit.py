"""``esxi-configdrive audit``: every config drive of a datacenter (or of a VM folder) in one table, and ``--fix``
for what is safe to repair. The decisions are drive/audit.py's; this prints them."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any

from ..defaults import ORPHAN_MIN_AGE
from ..drive.audit_judge import STATES
from ..errors import ValidationError
from ..fields import check_inventory_path
from ..transport import DEFAULT_TRANSPORT
from .options import add_connection_options, connection_settings
from .output import table


def add_audit_command(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="every VM's config drive and the orphans under ConfigDrive/, in a few calls; --fix repairs",
        description="One row per VM with a config drive, a drive record or files under ConfigDrive/, and per "
        "orphan ISO or folder. Costs a few PropertyCollector calls and one search per datastore, whatever the "
        "number of VMs. Exit status 0: all is well; 1: something needs attention.",
    )
    p.add_argument("--folder", metavar="PATH", help="only the VMs in this VM folder and below (DC/vm/PATH or PATH)")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also download every drive's ISO and compare its SHA-256 with the record (one GET of ~100 KiB per "
        "VM; without it a file is judged by its size)",
    )
    p.add_argument(
        "--fix",
        action="store_true",
        help="re-attach removed, emptied or disconnected drives from their recorded ISO (when it is there and "
        f"is the recorded one) and delete orphans of this tool's older than {ORPHAN_MIN_AGE / 3600:.0f} h; "
        "re-uploads nothing",
    )
    p.add_argument("--dry-run", action="store_true", help="with --fix: print what it would do, change nothing")
    add_connection_options(p)
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from ..batch import BatchSummary, Progress
    from ..vsphere.connection import Session
    from .remote import controller_for

    if args.dry_run and not args.fix:
        raise ValidationError("dry-run", "goes with --fix (the audit itself changes nothing)")
    if args.folder is not None:
        check_inventory_path(args.folder, "folder")  # before connecting
    progress = Progress()
    started = time.monotonic()

    def tally(done: int, changed: int, failed: int) -> None:
        progress.update(BatchSummary(total=done, changed=changed, failed=failed))

    with Session(connection_settings(args)) as session:
        report = controller_for(session, args).audit(
            folder=args.folder, verify=args.verify, fix=args.fix, dry_run=args.dry_run, progress=tally
        )
    fixed = [r for r in report.fixes.values() if not isinstance(r, str)]
    progress.close(
        BatchSummary(
            total=report.vms,
            changed=sum(r.changed for r in fixed),
            failed=len(report.fixes) - len(fixed),
            seconds=time.monotonic() - started,
        )
    )
    if args.json:
        for line in json_rows(report):
            print(line, flush=True)
    else:
        for line in human(report):
            print(line)
    return report.exit_status


def json_rows(report: Any) -> list[str]:
    out = []
    for index, finding in enumerate(report.findings):
        row = finding.to_dict()
        fixed = report.fixes.get(index)
        if isinstance(fixed, str):
            row["fix_error"] = fixed
        elif fixed is not None:
            row["fixed"] = {k: v for k, v in fixed.to_dict().items() if k != "vm"}
        out.append(json.dumps(row, ensure_ascii=False))
    return out


def human(report: Any) -> list[str]:
    """The table, what --fix did, the notes, and one summary line."""
    many = len({f.datacenter for f in report.findings}) > 1
    # The transport column only where a drive is not a config drive: a fleet of config drives reads as it did.
    transports = any(f.transport is not DEFAULT_TRANSPORT for f in report.findings)
    header = ["VM", "STATE", *(["TRANSPORT"] if transports else []), "PATH", "NOTES"]
    header = ["DATACENTER", *header] if many else header
    body = []
    for f in report.findings:
        row = [f.vm or "-", f.state, *([f.transport.value] if transports else []), f.path or "-", "; ".join(f.notes)]
        body.append([f.datacenter, *row] if many else row)
    lines = table(header, body) if body else []
    if report.fixes:
        done = []
        for index, fixed in sorted(report.fixes.items()):
            finding = report.findings[index]
            name = finding.path if finding.state == "orphan" else finding.vm
            if isinstance(fixed, str):
                actions = [fixed]
            else:
                warned = [f"warning: {w}" for w in fixed.extra.get("warnings", [])]
                actions = [*(fixed.actions or ([] if warned else ["nothing"])), *warned]
            done += [[name if i == 0 else "", action] for i, action in enumerate(actions)]
        lines += ["", f"Fixes{' (dry run: nothing changed)' if report.dry_run else ''}:"]
        lines += ["  " + line for line in table(["FOR", "ACTIONS"], done)]
    lines += [f"note: {note}" for note in report.notes]
    lines.append(summary(report))
    return lines


def summary(report: Any) -> str:
    states = Counter(f.state for f in report.findings)
    counted = ", ".join(f"{states[s]} {s}" for s in STATES if states[s]) or "no drives"
    text = f"{_n(report.vms, 'VM')} read, {_n(report.datastores, 'datastore')} searched: {counted}"
    attention = report.needs_attention
    fixable = sum(1 for i in attention if report.findings[i].fix)
    if report.fixes and not report.dry_run:
        failed = sum(1 for r in report.fixes.values() if isinstance(r, str))
        text += f"; {sum(report.resolved(i) for i in report.fixes)} fixed, {failed} failed"
    if not attention:
        return text + "; all is well"
    needs = "needs" if len(attention) == 1 else "need"
    return text + f"; {len(attention)} {needs} attention" + (f" ({fixable} fixable with --fix)" if fixable else "")


def _n(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")

"""The command line: ``esxi-configdrive COMMAND …``. Human output by default, one JSON object with --json; exit 0
done, 1 failure, 2 bad input (errors.py). build and inspect (local.py) never import a vSphere library; the
vSphere commands (remote.py) import it when they run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from ..dispatch import Request
from ..errors import EXIT_FAILURE, EXIT_OK, UsageError, ValidationError, describe_failure
from .audit import add_audit_command
from .local import add_local_commands
from .output import fail, print_result
from .remote import add_vsphere_commands, run_request

__all__ = ["build_parser", "main"]
log = logging.getLogger("esxi_configdrive")
READ_ONLY = ("status", "inspect")  # their human output does not say "Changed: false"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UsageError (one line, exit status 2) instead of a usage page and exit."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split(" ", 1)[1] if " " in self.prog else "usage"
        if "unrecognized arguments: -" in message or "expected one argument" in message:
            message += " (a VM name starting with '-' goes after --)"
        raise UsageError(command, message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="esxi-configdrive",
        description="Build config drives (ISO 9660, label config-2) and manage them on vSphere VMs.",
        epilog="Exit status: 0 done, 1 vSphere or runtime failure, 2 bad input. See docs/usage.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_local_commands(sub)
    add_vsphere_commands(sub)
    add_audit_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    as_json = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        return fail(str(e), e.exit_status, as_json)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    as_json = getattr(args, "json", False)
    try:
        result: Any = args.func(args)
        if isinstance(result, Request):  # a vSphere command's input, read and checked: run it here
            result = run_request(args, args.command, result)
    except ValidationError as e:
        return fail(str(e), e.exit_status, as_json)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_FAILURE, as_json)
    except Exception as e:
        message, status = describe_failure(e)
        log.debug("failure", exc_info=True)
        return fail(message, status, as_json)
    if isinstance(result, int):
        return result  # the command printed its own output (batch mode: one JSON line per VM)
    if result is not None:  # None: the command wrote its output itself (an ISO to stdout)
        print_result(result, as_json, read_only=args.command in READ_ONLY)
    return EXIT_OK

"""What the command line prints: a result for people (the default) or as one JSON object (--json), and a
failure as one line on stderr (plus a JSON object with --json) with the exit status it stands for."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from ..errors import changed_after
from ..errors import one_line as _folded

# Control characters, and Unicode's bidirectional overrides, from hostile input (a metadata key, a VM name)
# would reach the admin's terminal as they are: shown escaped instead.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(m: re.Match[str]) -> str:
    return ascii(m.group())[1:-1]  # '\x00', '\u202e'


def print_result(result: dict[str, Any], as_json: bool, stream: Any = None) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False, sort_keys=False), file=stream or sys.stdout)
    else:
        print_human(result, stream)


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


def print_json_line(result: dict[str, Any]) -> None:
    print(json.dumps(result, ensure_ascii=False), flush=True)


def fail(message: str, status: int, as_json: bool) -> int:
    """Report a failure; returns the exit status."""
    message = one_line(message)
    if as_json:
        # bad input changed nothing; after a vSphere failure the message says what state the VM is in
        print(json.dumps({"changed": changed_after(status), "error": message, "exit_status": status}))
    print(f"esxi-configdrive: error: {message}", file=sys.stderr)
    return status


def one_line(message: str) -> str:
    """One line, whatever the cause produced, with nothing that could steer the terminal."""
    return _UNPRINTABLE.sub(_escaped, _folded(message))

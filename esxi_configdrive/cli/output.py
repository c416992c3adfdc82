"""What the command line prints: a result for people (the default) or as one JSON object (--json), and a
failure as one line on stderr (plus a JSON object with --json) with the exit status it stands for.

For people, as govc prints ``vm.info`` and ``device.info``: one aligned column of ``Label:  value`` fields, the
fields of a part indented under its heading, a list's items one per line in the value column, lists of records
as small tables. Nothing is printed as JSON. Everything shown is escaped against control characters.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import changed_after
from ..errors import one_line as _folded

# Control characters, and Unicode's bidirectional overrides, from hostile input (a metadata key, a VM name)
# would reach the admin's terminal as they are: shown escaped instead.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# Our own keys as words (the rest: underscores become spaces, the first letter a capital).
_WORDS = {"vm": "VM", "iso": "ISO", "id": "ID", "sha256": "SHA-256", "uuid": "UUID", "userdata": "User data"}
# Parts whose keys are the drive's own content, shown as they are.
DATA_KEYS = frozenset({"metadata", "vendor_data", "network_data"})
INDENT = "  "
MAX_LABEL_WIDTH = 30  # a longer label pushes only its own value to the right


def _escaped(m: re.Match[str]) -> str:
    return ascii(m.group())[1:-1]  # '\x00', '\u202e'


def cell(value: Any) -> str:
    """One value on one line, as people read it: true/false (as govc), nothing for None, escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _UNPRINTABLE.sub(_escaped, "" if value is None else str(value))


def label(key: str) -> str:
    words = " ".join(_WORDS.get(w, w) for w in key.split("_"))
    return words[:1].upper() + words[1:]


def print_result(result: dict[str, Any], as_json: bool, stream: Any = None, read_only: bool = False) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False, sort_keys=False), file=stream or sys.stdout)
    else:
        print_human(result, stream, read_only)


def print_human(result: Mapping[str, Any], stream: Any = None, read_only: bool = False) -> None:
    """``read_only``: a command that changes nothing (status, inspect) does not say so."""
    shown = {k: v for k, v in result.items() if not (read_only and k == "changed")}
    for line in fields(shown):
        print(line, file=stream or sys.stdout)


# ---- fields -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    depth: int
    label: str | None  # None: a line of text (a table's, a multi-line value's); "": a field's next value
    value: str = ""


def fields(result: Mapping[str, Any], raw: bool = False) -> list[str]:
    """The result as aligned ``Label:  value`` lines; ``raw``: the keys are names (VMs, files), not our fields."""
    rows: list[_Row] = []
    _walk(result, 0, rows, raw=raw)
    width = min(max((len(INDENT * r.depth) + len(r.label) + 1 for r in rows if r.label), default=0), MAX_LABEL_WIDTH)
    out = []
    for r in rows:
        if r.label is None:
            out.append(f"{INDENT * r.depth}{r.value}")
        else:
            name = f"{INDENT * r.depth}{r.label}:" if r.label else ""
            out.append(f"{name.ljust(width)}  {r.value}".rstrip() if r.value else name)
    return out


def _walk(mapping: Mapping[str, Any], depth: int, rows: list[_Row], raw: bool) -> None:
    for key, value in mapping.items():
        if value is None or value == {} or value == []:
            continue
        name = cell(key) if raw else label(key)
        inner_raw = raw or key in DATA_KEYS
        if isinstance(value, Mapping):
            rows.append(_Row(depth, name))
            _walk(value, depth + 1, rows, inner_raw)
        elif isinstance(value, (list, tuple)):
            _items(name, value, depth, rows, inner_raw)
        elif isinstance(value, str) and "\n" in value:
            rows.append(_Row(depth, name))
            rows += [
                _Row(depth + 1, None, _UNPRINTABLE_IN_TEXT.sub(_escaped, line))
                for line in value.rstrip("\n").split("\n")
            ]
        else:
            rows.append(_Row(depth, name, cell(value)))


def _items(name: str, items: Sequence[Any], depth: int, rows: list[_Row], raw: bool) -> None:
    if all(not isinstance(v, (Mapping, list, tuple)) for v in items):
        rows.append(_Row(depth, name, cell(items[0])))
        rows += [_Row(depth, "", cell(v)) for v in items[1:]]  # continued in the value column
        return
    rows.append(_Row(depth, name))
    if all(
        isinstance(v, Mapping) and all(not isinstance(x, (Mapping, list, tuple)) for x in v.values()) for v in items
    ):
        columns = list(dict.fromkeys(k for item in items for k in item))
        header = [k if raw else label(k).upper() for k in columns]
        body = [[cell(item.get(k)) for k in columns] for item in items]
        rows += [_Row(depth + 1, None, line) for line in table(header, body)]
        return
    for number, item in enumerate(items, start=1):
        if isinstance(item, Mapping):
            rows.append(_Row(depth + 1, f"#{number}"))
            _walk(item, depth + 2, rows, raw)
        else:
            _items(f"#{number}", item if isinstance(item, (list, tuple)) else [item], depth + 1, rows, raw)


# ---- tables -------------------------------------------------------------------------------------------------------


def table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart (govc's tabwriter layout); cells are escaped."""
    lines = [[cell(c) for c in header], *([cell(c) for c in row] for row in body)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]


# ---- JSON and failures --------------------------------------------------------------------------------------------


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

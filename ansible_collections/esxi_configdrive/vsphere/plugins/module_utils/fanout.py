"""``vms:``: many VMs in one task, on one session, through the package's batch mode.

Each entry is one line of the JSON-lines format of ``attach|update|detach|remove --batch`` (docs/usage.md): it is
serialised to that line and fed through ``read_batch`` and ``run_batch``, so a bad entry or a failing VM gets its
own error result and the others go on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

with contextlib.suppress(ImportError):  # reported by common.require_package
    from esxi_configdrive import ValidationError
    from esxi_configdrive.batch import read_batch, run_batch

from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils.content import content_spec, without_none

STATE_COMMANDS = {"detached": "detach", "absent": "remove"}


def entry_spec() -> dict[str, Any]:
    """The keys of a batch line, typed; the passwords no_log."""
    shared = content_spec()  # the keys a line names as the module's own options do
    return {
        "vm": {"type": "str", "required": True},
        **{key: shared[key] for key in ("vmdata", "vmdata_file", "userdata", "network")},
        **{
            key: {"type": "str"}
            for key in ("userdata_base64", "hostname", "datastore", "controller", "network_data", "transport")
        },
        "password": {"type": "str", "no_log": True},
        "public_keys": {"type": "list", "elements": "str", "no_log": False},
        "new_instance_id": {"type": "bool"},
        "guestinfo_password": {"type": "bool", "no_log": False},
    }


def command_for(state: str, entry: dict[str, Any]) -> str:
    """present: attach when the entry carries the whole content, else update (fields of the current drive)."""
    if state in STATE_COMMANDS:
        return STATE_COMMANDS[state]
    return "attach" if entry.get("vmdata") is not None or entry.get("vmdata_file") else "update"


def batch_line(entry: dict[str, Any]) -> str:
    line = without_none(entry)
    if isinstance(line.get("vmdata"), dict):
        line["vmdata"] = without_none(line["vmdata"])
    return json.dumps(line, ensure_ascii=False)


def run(
    controller: Any, state: str, entries: list[dict[str, Any]], *, concurrency: int, defaults: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every entry's result, in the order of ``entries`` (each with its ``index``), and the counts."""
    groups: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        groups.setdefault(command_for(state, entry), []).append(index)
    results: list[dict[str, Any]] = []
    counts = {"total": 0, "changed": 0, "failed": 0, "bad_input": 0}
    for command, indexes in groups.items():
        lines = [batch_line(entries[i]) for i in indexes]
        items = _indexed(read_batch(lines, command), indexes)
        summary = run_batch(
            controller, command, items, concurrency=concurrency, defaults=defaults, on_result=results.append
        )
        for key in counts:
            counts[key] += getattr(summary, key)
    for result in results:  # read_batch numbered the lines of its group from 1
        result["index"] = result.pop("line")
    return sorted(results, key=lambda r: r["index"]), counts


def _indexed(items: Iterable[Any], indexes: list[int]) -> Iterator[Any]:
    """The items with ``line`` set to the entry's index in ``vms``, and their errors naming ``vms[i]``."""
    for item in items:
        index = indexes[item.line - 1]
        if item.error is not None:
            field = item.error.field
            prefix = f"line {item.line}: "
            field = field[len(prefix) :] if field.startswith(prefix) else field
            item.error = ValidationError(f"vms[{index}].{field}", item.error.message)
        item.line = index
        yield item

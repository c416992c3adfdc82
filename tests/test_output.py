"""The command line's output for people (cli/output.py): aligned fields as govc prints them, parts indented under
a heading, lists one item a line, lists of records as tables, nothing as JSON, everything escaped."""

from __future__ import annotations

import json
import re

import sample_data as sd

from esxi_configdrive.cli import main
from esxi_configdrive.cli.output import fields, table


def test_fields_align_in_one_column_with_parts_indented() -> None:
    lines = fields({
        "vm": "web-1", "changed": True, "actions": ["uploaded 1 byte", "point CD-ROM 3000 at x"],
        "device": {"key": 3000, "start_connected": False}, "sha256": "ab", "empty": None, "none": [],
    })  # fmt: skip
    assert lines == [
        "VM:                 web-1",
        "Changed:            true",
        "Actions:            uploaded 1 byte",
        "                    point CD-ROM 3000 at x",
        "Device:",
        "  Key:              3000",
        "  Start connected:  false",
        "SHA-256:            ab",
    ]


def test_records_become_a_table_and_text_a_block_and_data_keys_stay_as_they_are() -> None:
    lines = fields({
        "network_data": {"links": [{"id": "eth0", "mtu": 1500}, {"id": "eth1", "mtu": None}]},
        "metadata": {"local-hostname": "web-1", "a_b": "kept"},
        "userdata": "#cloud-config\n\truncmd: []\n",
    })  # fmt: skip
    assert lines == [
        "Network data:",
        "  links:",
        "    id    mtu",
        "    eth0  1500",
        "    eth1",
        "Metadata:",
        "  local-hostname:  web-1",
        "  a_b:             kept",
        "User data:",
        "  #cloud-config",
        "  \truncmd: []",
    ]


def test_control_characters_are_escaped_in_fields_tables_and_text() -> None:
    hostile = "x\x1b[2J\u202ey\x9b"
    shown = "\n".join(
        fields({"vm": hostile, "metadata": {hostile: hostile}, "userdata": f"{hostile}\nline\n"})
        + table(["VM"], [[hostile]])
    )
    assert "\x1b" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert shown.count("x\\x1b[2J\\u202ey\\x9b") == 5


def test_inspect_for_people_prints_no_json(tmp_path, capsys) -> None:
    vmdata = tmp_path / "vm.json"
    vmdata.write_text(json.dumps(sd.sample_vmdata().to_dict()))
    iso = tmp_path / "d.iso"
    assert main(["build", "--vmdata", str(vmdata), "-o", str(iso)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(iso)]) == 0
    out = capsys.readouterr().out
    assert not re.search(r'(?m)^\s*"[^"]+": |[{[]$', out)  # no JSON object or list inside the text
    assert re.search(r"(?m)^  local-hostname: +web-1$", out)  # the metadata as fields
    assert "Changed:" not in out  # a read-only command does not say it changed nothing
    assert out.splitlines()[0].startswith("ISO:") and "Network data:" in out

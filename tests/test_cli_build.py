"""The build and inspect commands: output file, exit status, error lines, password masking, start-up imports."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sample_data as sd
import yaml

from esxi_configdrive import read_iso
from esxi_configdrive.cli import main
from esxi_configdrive.content import MASK

SECRET = sd.PASSWORD
# The password has quotes and a backslash, which JSON or repr() would escape; look for a plain part of it too.
SECRET_PART = "s3cr"
assert SECRET_PART in SECRET


def leaks(text: str) -> bool:
    return SECRET in text or SECRET_PART in text


def write_vmdata(tmp_path: Path, obj=None, name: str = "vm.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(sd.sample_dict() if obj is None else obj))
    return path


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command as an admin runs it: a new interpreter, real stdin/stdout/stderr."""
    return subprocess.run(
        [sys.executable, "-m", "esxi_configdrive.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


# ---- build ------------------------------------------------------------------------------------------------


def test_build_writes_network_data_only_when_there_is_some_or_on_request(tmp_path, capsys):
    """No network data: no network_data.json (cloud-init then uses DHCP); --network-data empty: CloudStack's {}."""
    minimal = write_vmdata(tmp_path, {"metadata": {"vm-id": "x"}})
    plain, empty = tmp_path / "plain.iso", tmp_path / "empty.iso"
    assert main(["build", "--vmdata", str(minimal), "-o", str(plain)]) == 0
    assert main(["build", "--vmdata", str(minimal), "--network-data", "empty", "-o", str(empty)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(plain), "--json"]) == 0
    assert "openstack/latest/network_data.json" not in json.loads(capsys.readouterr().out)["files"]
    assert main(["inspect", str(empty), "--json"]) == 0
    inspected = json.loads(capsys.readouterr().out)
    assert "openstack/latest/network_data.json" in inspected["files"] and inspected["network_data"] == {}
    assert read_iso(empty).empty_network_data and not read_iso(plain).empty_network_data


def test_build_writes_iso_with_mode_0600(tmp_path, capsys):
    out = tmp_path / "out.iso"
    assert main(["build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert read_iso(out) == sd.sample_vmdata()
    human = capsys.readouterr().out
    assert re.search(r"(?m)^Changed: +true$", human) and re.search(rf"(?m)^Output: +{re.escape(str(out))}$", human)
    assert not leaks(human)
    assert files_in(tmp_path) == {"vm.json", "out.iso"}  # no temporary file left behind


def test_build_mode_0600_despite_permissive_umask(tmp_path):
    out = tmp_path / "out.iso"
    old = os.umask(0)
    try:
        assert main(["build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_build_json_prints_one_object_with_changed(tmp_path):
    out = tmp_path / "out.iso"
    proc = cli("build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["changed"] is True
    assert result["output"] == str(out)
    assert result["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert result["bytes"] == out.stat().st_size
    assert result["label"] == "config-2" and result["vm_id"] == sd.VM_ID
    assert not leaks(proc.stdout) and proc.stderr == ""


def test_build_to_stdout(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "esxi_configdrive.cli", "build", "--vmdata", str(write_vmdata(tmp_path)), "-o", "-"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_iso(proc.stdout) == sd.sample_vmdata()
    assert files_in(tmp_path) == {"vm.json"}


def test_build_replaces_an_existing_file(tmp_path):
    out = tmp_path / "out.iso"
    out.write_bytes(b"old")
    assert main(["build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(out)]) == 0
    assert read_iso(out).vm_id == sd.VM_ID


BAD_INPUTS = [
    ({"metadata": {"local-hostname": "web-1"}, "password": SECRET}, "metadata.vm-id"),
    ({"metadata": {"vm-id": "x", "local-hostname": "bad_host"}, "password": SECRET}, "metadata.local-hostname"),
    ({"metadata": {"vm-id": "x", "../etc": "v"}, "password": SECRET}, "metadata"),
    ({"metadata": {"vm-id": "x", "public-keys": ["ssh-rsa AAAA"]}, "password": SECRET}, "metadata.public-keys[0]"),
    ({"metadata": {"vm-id": "x"}, "userdata_base64": "%%%", "password": SECRET}, "userdata_base64"),
    ({"metadata": {"vm-id": "x"}, "password": SECRET + "\n2nd"}, "password"),
    ({"metadata": {"vm-id": "x"}, "password": SECRET, "extra": 1}, "extra"),
    ([["metadata", "vm-id", "x"], ["password", "vm_password", SECRET], ["bogus", "a", "b"]], "vmdata[2]"),
]


@pytest.mark.parametrize("obj, field", BAD_INPUTS, ids=[f for _, f in BAD_INPUTS])
def test_bad_input_exit_2_one_line_no_output(tmp_path, obj, field):
    out = tmp_path / "out.iso"
    proc = cli("build", "--vmdata", str(write_vmdata(tmp_path, obj)), "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"esxi-configdrive: error: {field}: "), lines[0]
    assert not leaks(proc.stderr) and not leaks(proc.stdout)
    assert "Traceback" not in proc.stderr
    assert files_in(tmp_path) == {"vm.json"}  # neither the ISO nor a temporary file


def test_bad_input_keeps_an_existing_output(tmp_path):
    out = tmp_path / "out.iso"
    out.write_bytes(b"previous drive")
    assert main(["build", "--vmdata", str(write_vmdata(tmp_path, {"metadata": {}})), "-o", str(out)]) == 2
    assert out.read_bytes() == b"previous drive"
    assert files_in(tmp_path) == {"vm.json", "out.iso"}


def test_bad_input_json_error_object(tmp_path):
    proc = cli("build", "--vmdata", str(write_vmdata(tmp_path, {"metadata": {}})), "-o", str(tmp_path / "o"), "--json")
    assert proc.returncode == 2
    result = json.loads(proc.stdout)
    assert result["exit_status"] == 2 and result["error"].startswith("metadata.vm-id:")
    assert len(proc.stderr.splitlines()) == 1


def test_missing_vmdata_file_is_bad_input(tmp_path):
    proc = cli("build", "--vmdata", str(tmp_path / "nope.json"), "-o", str(tmp_path / "o.iso"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("esxi-configdrive: error: vmdata: cannot read")
    assert files_in(tmp_path) == set()


def test_unwritable_output_directory_is_a_failure_not_a_crash(tmp_path):
    proc = cli("build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(tmp_path / "no" / "such" / "dir.iso"))
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


def test_yaml_and_triples_files(tmp_path):
    yaml_file = tmp_path / "vm.yaml"
    yaml_file.write_text(yaml.safe_dump(sd.sample_dict()))
    assert main(["build", "--vmdata", str(yaml_file), "-o", str(tmp_path / "a.iso")]) == 0
    assert read_iso(tmp_path / "a.iso") == sd.sample_vmdata()
    triples = [["metadata", "vm-id", "x"], ["password", "vm_password", "pw"], ["userdata", "user_data", "aGk="]]
    path = write_vmdata(tmp_path, triples, "triples.json")
    assert main(["build", "--vmdata", str(path), "-o", str(tmp_path / "b.iso")]) == 0
    got = read_iso(tmp_path / "b.iso")
    assert (got.vm_id, got.password, got.userdata) == ("x", "pw", b"hi")


# ---- overrides and options --------------------------------------------------------------------------------


def test_overrides(tmp_path):
    ud = tmp_path / "ud"
    ud.write_bytes(b"#!/bin/sh\necho override\n")
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    k1.write_text(sd.ECDSA_KEY + "\n")
    k2.write_text(f"# two keys\n{sd.RSA_KEY}\n{sd.ED25519_KEY}\n")
    out = tmp_path / "out.iso"
    args = ["build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(out), "--userdata-file", str(ud)]
    args += ["--password-file", str(pw), "--ssh-key-file", str(k1), "--ssh-key-file", str(k2), "--hostname", "db-9"]
    assert main(args) == 0
    got = read_iso(out)
    assert got.userdata == b"#!/bin/sh\necho override\n"
    assert got.password == "from-file"
    assert got.public_keys == [sd.ECDSA_KEY, sd.RSA_KEY, sd.ED25519_KEY]
    assert got.hostname == "db-9"
    assert got.metadata["instance-id"] == sd.METADATA["instance-id"]  # the rest of the file is kept


def test_password_file_from_stdin(tmp_path):
    out = tmp_path / "out.iso"
    vm = write_vmdata(tmp_path, {"metadata": {"vm-id": "x"}})
    proc = cli("build", "--vmdata", str(vm), "-o", str(out), "--password-file", "-", stdin='pä:ss "w"\n')
    assert proc.returncode == 0, proc.stderr
    assert read_iso(out).password == 'pä:ss "w"'
    assert "pä:ss" not in proc.stdout


def test_build_options(tmp_path):
    out = tmp_path / "out.iso"
    args = ["build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(out), "--label", "CONFIG-2"]
    assert main([*args, "--no-password-vendor-data", "--dated-versions"]) == 0
    got = read_iso(out)
    assert got.label == "CONFIG-2" and sd.volume_label(out.read_bytes()) == "CONFIG-2"
    assert not got.password_vendor_data and got.dated_versions
    assert "openstack/2018-08-27/meta_data.json" in sd.iso_listing(out.read_bytes())


def test_bad_label_and_bad_override_files(tmp_path, capsys):
    vm = str(write_vmdata(tmp_path))
    out = str(tmp_path / "o.iso")
    assert main(["build", "--vmdata", vm, "-o", out, "--label", "x" * 17]) == 2
    assert capsys.readouterr().err.startswith("esxi-configdrive: error: label:")
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("ssh-ed25519 nothing\n")
    assert main(["build", "--vmdata", vm, "-o", out, "--ssh-key-file", str(bad_key)]) == 2
    assert "ssh-key-file" in capsys.readouterr().err
    assert main(["build", "--vmdata", vm, "-o", out, "--hostname", "no_underscores"]) == 2
    assert "metadata.local-hostname" in capsys.readouterr().err
    assert main(["build", "--vmdata", vm, "-o", out, "--password-file", str(tmp_path / "none")]) == 2
    assert "password-file" in capsys.readouterr().err
    assert not (tmp_path / "o.iso").exists()


def test_max_userdata_bytes(tmp_path, capsys):
    big = tmp_path / "big"
    big.write_bytes(b"b" * (1536 * 1024))
    vm = str(write_vmdata(tmp_path, {"metadata": {"vm-id": "x"}, "userdata": "c" * (1536 * 1024)}))
    out = tmp_path / "o.iso"
    assert main(["build", "--vmdata", vm, "-o", str(out)]) == 2  # the file's user data is over 1 MiB
    assert "userdata:" in capsys.readouterr().err
    assert main(["build", "--vmdata", vm, "-o", str(out), "--max-userdata-bytes", str(2 << 20)]) == 0
    assert read_iso(out).userdata == b"c" * (1536 * 1024)
    small = str(write_vmdata(tmp_path, {"metadata": {"vm-id": "x"}}, "small.json"))
    assert main(["build", "--vmdata", small, "-o", str(out), "--userdata-file", str(big)]) == 2
    assert "userdata-file" in capsys.readouterr().err
    args = ["build", "--vmdata", small, "-o", str(out), "--userdata-file", str(big), "--max-userdata-bytes"]
    assert main([*args, str(2 << 20)]) == 0
    assert read_iso(out).userdata == b"b" * (1536 * 1024)
    assert main(["build", "--vmdata", small, "-o", str(out), "--userdata-file", str(big), *args[-1:], "100"]) == 2


# ---- inspect ----------------------------------------------------------------------------------------------


@pytest.fixture
def built(tmp_path) -> Path:
    out = tmp_path / "drive.iso"
    assert main(["build", "--vmdata", str(write_vmdata(tmp_path)), "-o", str(out)]) == 0
    return out


def test_inspect_masks_the_password(built):
    for extra in ([], ["--json"]):
        proc = cli("inspect", str(built), *extra)
        assert proc.returncode == 0, proc.stderr
        assert not leaks(proc.stdout) and not leaks(proc.stderr)
        assert MASK in proc.stdout
        assert sd.VM_ID in proc.stdout and sd.HOSTNAME in proc.stdout


def test_inspect_json(built):
    proc = cli("inspect", str(built), "--json")
    result = json.loads(proc.stdout)
    assert result["changed"] is False
    assert result["password"] == MASK and result["password_set"] is True
    assert result["vm_id"] == sd.VM_ID and result["hostname"] == sd.HOSTNAME
    assert result["public_keys"] == [sd.ED25519_KEY, sd.RSA_KEY]
    assert result["userdata"] == sd.USERDATA.decode()
    assert result["network_data"] == sd.NETWORK_DATA
    assert result["vendor_data"] == {}  # the generated password part is not shown
    assert "openstack/latest/user_data" in result["files"]


def test_inspect_show_password(built):
    proc = cli("inspect", str(built), "--json", "--show-password")
    assert json.loads(proc.stdout)["password"] == SECRET
    human = cli("inspect", str(built), "--show-password")
    assert re.search(rf"(?m)^Password: +{re.escape(SECRET)}$", human.stdout)


def test_inspect_binary_userdata(tmp_path):
    vm = write_vmdata(tmp_path, {"metadata": {"vm-id": "x"}, "userdata_base64": "AP8A/w=="})
    out = tmp_path / "o.iso"
    assert main(["build", "--vmdata", str(vm), "-o", str(out)]) == 0
    result = json.loads(cli("inspect", str(out), "--json").stdout)
    assert result["userdata_base64"] == "AP8A/w==" and "password" not in result


def test_inspect_bad_iso_is_bad_input(tmp_path):
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 70000)
    proc = cli("inspect", str(junk))
    assert proc.returncode == 2
    assert proc.stderr.startswith("esxi-configdrive: error: iso:") and len(proc.stderr.splitlines()) == 1


# ---- start-up cost ----------------------------------------------------------------------------------------

NO_PYVMOMI = """
import json, sys
from esxi_configdrive import cli
rc = cli.main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pyVmomi", "pyVim", "vmware"))
print(json.dumps({"rc": rc, "loaded": loaded}), file=sys.stderr)
"""


@pytest.mark.parametrize("command", ["build", "inspect"])
def test_build_and_inspect_do_not_import_pyvmomi(tmp_path, command):
    vm = write_vmdata(tmp_path)
    out = tmp_path / "o.iso"
    assert main(["build", "--vmdata", str(vm), "-o", str(out)]) == 0
    args = (
        ["build", "--vmdata", str(vm), "-o", str(tmp_path / "p.iso")] if command == "build" else ["inspect", str(out)]
    )
    proc = subprocess.run([sys.executable, "-c", NO_PYVMOMI, *args], capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["rc"] == 0
    assert report["loaded"] == [], f"{command} imported {report['loaded']}"


def test_the_import_check_can_see_pyvmomi():
    # The check above would notice: importing pyVmomi does show up in sys.modules.
    proc = subprocess.run(
        [sys.executable, "-c", "import pyVmomi, sys; print('pyVmomi' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "True", proc.stderr

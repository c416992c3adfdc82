"""Hostile input ends in one clear line naming the field (exit status 2), never a traceback, and changes nothing
in vSphere: malformed or mistyped VM data files, path tricks in VM, datastore and host names, and corrupt or
truncated ISOs read back from a datastore. Fuzzed with hypothesis (the CLI end to end) and atheris (the parsers,
coverage-guided, tests/fuzz/)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sample_data as sd
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_fixtures import cli_env, cli_in_process, drive_state, tool_session, vsphere_writes
from tool_fixtures import fetch_file
from vsphere_harness import Vcsim, retrieve, upload

from esxi_configdrive import build_iso, read_iso
from esxi_configdrive.controller import ConfigDriveController
from esxi_configdrive.iso import MAX_ISO_BYTES
from esxi_configdrive.vsphere_values import DatastorePath

FUZZ = Path(__file__).parent / "fuzz"
ERROR_LINE = re.compile(r"^esxi-configdrive: error: (\S[^\n]*)$")


def assert_clear_error(run, status: int = 2, mentions: str | None = None) -> str:
    """Exactly one line on stderr, prefixed, no traceback; returns the message."""
    assert run.status == status, (run.status, run.err)
    lines = run.err.splitlines()
    assert len(lines) == 1, f"expected one line, got: {run.err!r}"
    m = ERROR_LINE.match(lines[0])
    assert m, lines[0]
    assert "Traceback" not in run.err and 'File "' not in run.err
    if mentions is not None:
        assert mentions in m.group(1), m.group(1)
    return m.group(1)


def names_a_field(message: str) -> bool:
    """``field: message`` (ValidationError) or a not-found message naming what it looked for."""
    return bool(re.match(r"^[^\s:][^:]*: \S", message)) or message.startswith("no ")


# ---- VM data files given to the CLI -----------------------------------------------------------------------------

GOOD = sd.sample_dict()
# The sample without its network data, whose link MAC is no simulator VM's (attach refuses such a link).
ON_A_VM = sd.sample_vmdata(network_data={})
HOSTILE_FILES: dict[str, bytes] = {
    "empty": b"",
    "only whitespace": b"  \n\t\n",
    "json syntax": b'{"metadata": {"vm-id": "x",}',
    "json truncated": json.dumps(GOOD).encode()[:-7],
    "yaml syntax": b"metadata:\n  vm-id: [unclosed\n",
    "yaml billion laughs": b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nmetadata: {vm-id: *c}\n',
    "yaml python tag": b"metadata: !!python/object/apply:os.system ['true']\n",
    "yaml bad date": b"metadata:\n  vm-id: 2001-13-45\n",
    "not utf-8": b'{"metadata": {"vm-id": "\xff\xfe"}}',
    "utf-16": json.dumps(GOOD).encode("utf-16"),
    "nul in text": b'{"metadata": {"vm-id": "a\x00b"}}',
    "top-level string": b'"just a string"',
    "top-level number": b"42",
    "top-level null": b"null",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep yaml nesting": b"a: " + b"[" * 50_000 + b"]" * 50_000,
    "huge integer": b'{"metadata": {"vm-id": ' + b"9" * 5000 + b"}}",
    "huge metadata value": json.dumps({"metadata": {"vm-id": "x", "note": "v" * 200_000}}).encode(),
    "huge userdata": json.dumps({"metadata": {"vm-id": "x"}, "userdata": "u" * (1024 * 1024 + 1)}).encode(),
    "metadata not an object": json.dumps({"metadata": ["vm-id", "x"]}).encode(),
    "vm-id blank": json.dumps({"metadata": {"vm-id": "  ", "local-hostname": "a"}}).encode(),
    "vm-id a number list": json.dumps({"metadata": {"vm-id": [1, 2]}}).encode(),
    "password a number": json.dumps({**GOOD, "password": 12345}).encode(),
    "password with newline": json.dumps({**GOOD, "password": "line1\nline2"}).encode(),
    "userdata not a string": json.dumps({**GOOD, "userdata": {"a": 1}}).encode(),
    "userdata_base64 invalid": json.dumps({"metadata": {"vm-id": "x"}, "userdata_base64": "!!!not base64"}).encode(),
    "public key garbage": json.dumps({"metadata": {"vm-id": "x", "public-keys": ["ssh-rsa ÄÖÜ"]}}).encode(),
    "key ../../etc/passwd": json.dumps({"metadata": {"vm-id": "x", "../../etc/passwd": "root"}}).encode(),
    "key with slash": json.dumps({"metadata": {"vm-id": "x", "a/b": "c"}}).encode(),
    "key with backslash": json.dumps({"metadata": {"vm-id": "x", "a\\b": "c"}}).encode(),
    "key dot-dot": json.dumps({"metadata": {"vm-id": "x", "..": "c"}}).encode(),
    "key hidden": json.dumps({"metadata": {"vm-id": "x", ".ssh": "c"}}).encode(),
    "key with NUL": json.dumps({"metadata": {"vm-id": "x", "a\u0000b": "c"}}).encode(),
    "key too long": json.dumps({"metadata": {"vm-id": "x", "k" * 300: "c"}}).encode(),
    "unknown top-level key": json.dumps({**GOOD, "../x": 1}).encode(),
    "network_data not an object": json.dumps({**GOOD, "network_data": "eth0"}).encode(),
    "bad mac": json.dumps({**GOOD, "network_data": {"links": [{"ethernet_mac_address": "zz"}]}}).encode(),
    "vendor_data NaN": b'{"metadata": {"vm-id": "x"}, "vendor_data": {"a": NaN}}',
    "triples wrong shape": json.dumps([["userdata", "user_data"]]).encode(),
    "triples path trick": json.dumps([["../metadata", "vm-id", "x"]]).encode(),
    "hostname injection": json.dumps({"metadata": {"vm-id": "x", "local-hostname": "a;rm -rf /"}}).encode(),
    "label too long": json.dumps({**GOOD}).encode(),  # with --label below
}
EXTRA_ARGS = {"label too long": ["--label", "L" * 40]}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_vmdata_file_build_is_a_clear_error(case: str, tmp_path: Path, tally) -> None:
    path = tmp_path / ("vm.yaml" if "yaml" in case else "vm.json")
    path.write_bytes(HOSTILE_FILES[case])
    out = tmp_path / "out.iso"
    run = cli_in_process(["build", "--vmdata", str(path), "-o", str(out), *EXTRA_ARGS.get(case, [])], cli_env())
    message = assert_clear_error(run)
    assert names_a_field(message), message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    tally.add("hostile", "VM data files (build)", cases=1)


def test_hostile_vmdata_files_change_nothing_in_vsphere(vcsim_faults: Vcsim, make_vm, tmp_path: Path, tally) -> None:
    """The same files given to attach: refused before any connection is made."""
    name = make_vm().name
    vcsim_faults.reset_faults()
    for case, content in HOSTILE_FILES.items():
        path = tmp_path / ("vm.yaml" if "yaml" in case else "vm.json")
        path.write_bytes(content)
        args = ["attach", name, "--vmdata", str(path), *EXTRA_ARGS.get(case, [])]
        run = cli_in_process(args, cli_env(vcsim_faults))
        assert names_a_field(assert_clear_error(run)), case
        counters = vcsim_faults.counters()
        assert counters["soap_calls"] == 0, f"{case}: connected before refusing the file: {counters}"
    tally.add("hostile", "VM data files (attach)", cases=len(HOSTILE_FILES))


# ---- names given to the CLI: VM, datastore, host ----------------------------------------------------------------

TRICKY_NAMES = ["x/../y", "../../etc/passwd", "/", "a]b", "[LocalDS_0] x", "[", "]", "a/b/c", "..", "vm\x00x",
                "x" * 5000, " ", "\t", "vm-0", "vm-999999", "00000000-0000-0000-0000-000000000000", "DC0/vm/../vm",
                "DC0/vm/nope", "é/ü", "a\nb", "%2e%2e%2f", "*", "?"]  # fmt: skip
TRICKY_DATASTORES = ["a]b", "[x", "x]", "a/b", "../LocalDS_0", "..", "x\x00y", "", " LocalDS_0", "LocalDS_0 ",
                     "a\\b", "no-such-ds"]  # fmt: skip


def _existing_vm_names(si) -> set[str]:
    from pyVmomi import vim

    return {row["name"] for row in retrieve(si, vim.VirtualMachine, ["name"])}


@pytest.fixture
def vmdata_file(tmp_path: Path) -> Path:
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(GOOD))
    return path


def test_tricky_names_are_refused_and_nothing_is_written(
    vcsim_faults: Vcsim, vsphere, make_vm, vmdata_file: Path, tmp_path: Path, tally
) -> None:
    existing = _existing_vm_names(vsphere)
    vm = make_vm()
    with tool_session(vcsim_faults) as s:
        ConfigDriveController(s).attach(vm.name, ON_A_VM)
    before = drive_state(vcsim_faults, vsphere, vm)
    pw = tmp_path / "pw"
    pw.write_text("new-Passw0rd\n")
    env = cli_env(vcsim_faults)
    runs = []
    for name in TRICKY_NAMES:
        assert name not in existing
        runs += [
            ["attach", name, "--vmdata", str(vmdata_file)],
            ["update", name, "--password-file", str(pw)],
            ["detach", name],
            ["remove", name],
            ["status", name],
            ["prepare-migration", name, "--host", "DC0_H0"],
        ]
    name = vm.name
    for ds in TRICKY_DATASTORES:
        runs += [["attach", name, "--vmdata", str(vmdata_file), "--datastore", ds]]
        if ds not in ("..", "no-such-ds"):  # well-formed names: not needed when the host sees the ISO already
            runs += [["prepare-migration", name, "--host", "DC0_C0_H1", "--datastore", ds]]
    for host in ["../DC0_H0", "x\x00", "", "[h]", "no-such-host", "h\x1b[2J"]:
        runs += [["prepare-migration", name, "--host", host]]
    runs += [["attach", "x/../y", "--vmdata", str(vmdata_file), "--datastore", "a]b"]]  # the brief's example
    vcsim_faults.reset_faults()
    for args in runs:
        run = cli_in_process(args, env)
        assert run.status == 2, (args, run.out, run.err)
        message = assert_clear_error(run)
        assert names_a_field(message), (args, message)
    counters = vcsim_faults.counters()
    assert vsphere_writes(counters) == {}, counters
    after = drive_state(vcsim_faults, vsphere, vm)
    assert (after.record, after.files, after.first) == (before.record, before.files, before.first)
    tally.add("hostile", "VM/datastore/host names (CLI)", cases=len(runs))


vm_name_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "/", "[", "]", "\x00", "DC0", "vm", "x", "%2f", "\\", " "]), max_size=8).map(
        "".join
    ),
).filter(lambda n: not re.fullmatch(r"\s*vm-\d+\s*", n))


def test_random_vm_and_datastore_names(vcsim_faults: Vcsim, vsphere, vmdata_file: Path, tally) -> None:
    """hypothesis: random names (text, and compositions of path-trick pieces) for the VM and the datastore."""
    existing = _existing_vm_names(vsphere)
    env = cli_env(vcsim_faults)
    seen = {"examples": 0}
    vcsim_faults.reset_faults()

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(name=vm_name_text, datastore=st.one_of(st.none(), vm_name_text))
    def check(name: str, datastore: str | None) -> None:
        if name.strip() in existing or (datastore or "").strip() == "LocalDS_0":
            return
        seen["examples"] += 1
        args = ["attach", name, "--vmdata", str(vmdata_file)] + (["--datastore", datastore] if datastore else [])
        message = assert_clear_error(cli_in_process(args, env))
        assert names_a_field(message), message

    check()
    assert vsphere_writes(vcsim_faults.counters()) == {}
    assert seen["examples"] >= 40
    tally.add("hostile", "random VM/datastore names (hypothesis)", examples=seen["examples"])


# ---- random VM data through the real command ----------------------------------------------------------------------

scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_like = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                         max_size=3), max_leaves=8)  # fmt: skip
FIELDS = ["metadata", "userdata", "password", "vendor_data", "network_data", "userdata_base64", "openstack_metadata",
          "metadata.vm-id", "metadata.public-keys", "metadata.local-hostname", "metadata.../x"]  # fmt: skip
mutated = st.tuples(st.sampled_from(FIELDS), json_like)


def _mutate(field: str, value) -> bytes:
    obj = json.loads(json.dumps(GOOD))
    if field.startswith("metadata."):
        obj["metadata"][field.split(".", 1)[1]] = value
    else:
        obj[field] = value
    return json.dumps(obj, allow_nan=True).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    raw=st.one_of(mutated.map(lambda fv: _mutate(*fv)), st.binary(max_size=200), st.text(max_size=200).map(str.encode))
)
def test_random_vmdata_through_the_cli(raw: bytes, tally) -> None:
    """hypothesis: random bytes, text, and the sample file with one field replaced by a random value of any type.
    Either a drive that reads back, or one clear line (exit 2) and no output file."""
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "vm.json", Path(tmp) / "out.iso"
        path.write_bytes(raw)
        run = cli_in_process(["build", "--vmdata", str(path), "-o", str(out)], cli_env())
        if run.status == 0:
            read_iso(out)
        else:
            assert names_a_field(assert_clear_error(run))
            assert not out.exists()
    tally.add("hostile", "random VM data via build (hypothesis)", examples=1)


# ---- corrupt ISOs on the datastore ----------------------------------------------------------------------------------


def _corruptions() -> dict[str, bytes]:
    good = build_iso(sd.sample_vmdata())
    zero_pvd = bytearray(good)
    zero_pvd[16 * 2048 : 17 * 2048] = bytes(2048)
    not_a_drive = bytearray(build_iso(sd.sample_vmdata()))
    at = not_a_drive.find(b'"uuid"')
    not_a_drive[at : at + 6] = b'\x00uuid"'  # meta_data.json is no longer JSON: cloud-init rejects the drive
    return {
        "garbage": b"\x89PNG not an iso" * 1000,
        "empty": b"",
        "one byte": b"\x00",
        "truncated to half": good[: len(good) // 2],
        "truncated to the descriptors": good[: 18 * 2048],
        "volume descriptor zeroed": bytes(zero_pvd),
        "meta_data.json not JSON": bytes(not_a_drive),
        "over 64 MiB": bytes(MAX_ISO_BYTES + 1),
    }


def test_corrupt_iso_on_the_datastore(vcsim_faults: Vcsim, vsphere, make_vm, tmp_path: Path, tally) -> None:
    """The attached file is overwritten behind the tool's back. update: one clear line, exit 2, nothing changed;
    status: reports the problem (exit 0: it is a report); attach --vmdata: rebuilds the drive."""
    pw = tmp_path / "pw"
    pw.write_text("new-Passw0rd\n")
    vmdata = tmp_path / "vm.json"
    vmdata.write_text(json.dumps({k: v for k, v in GOOD.items() if k != "network_data"}))
    env = cli_env(vcsim_faults)
    cases = _corruptions()
    for case, content in cases.items():
        vm = make_vm()
        with tool_session(vcsim_faults) as s:
            iso = ConfigDriveController(s).attach(vm.name, ON_A_VM).iso
        path = DatastorePath.parse(iso)
        assert upload(vcsim_faults, vsphere, path.datastore, path.path, content).status_code in (200, 201)
        before = drive_state(vcsim_faults, vsphere, vm)
        vcsim_faults.reset_faults()
        run = cli_in_process(["update", vm.name, "--password-file", str(pw)], env)
        message = assert_clear_error(run, mentions="iso")
        assert message.startswith("iso: ") and iso in message, message
        assert vsphere_writes(vcsim_faults.counters()) == {}, case
        after = drive_state(vcsim_faults, vsphere, vm)
        assert (after.record, after.files) == (before.record, before.files), case
        status = cli_in_process(["status", vm.name, "--json"], env)
        assert status.status == 0, status.err
        report = status.json()
        assert report["file_exists"] and report["matches_record"] is False and "problem" in report, case
        again = cli_in_process(["attach", vm.name, "--vmdata", str(vmdata)], env)
        assert again.status == 0, again.err
        attached = drive_state(vcsim_faults, vsphere, vm)
        assert [read_iso(c) for c in attached.files.values()] == [ON_A_VM.copy(admin_pass=False)], case
        assert fetch_file(vcsim_faults, vsphere, iso) is None or iso in attached.files
    tally.add("hostile", "corrupt ISO on the datastore (update/status/attach)", cases=len(cases))


# ---- atheris ----------------------------------------------------------------------------------------------------


def _atheris_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import atheris"], capture_output=True, timeout=60)
    return probe.returncode == 0


def _fuzz(target: str, runs: int, corpus: list[tuple[str, bytes]], tmp_path: Path, *extra: str) -> int:
    """Run a tests/fuzz target for ``runs`` iterations over a copy of ``corpus``; the iterations it reports."""
    if not _atheris_available():
        pytest.skip("atheris is not installed (pip install atheris): the hypothesis tests above still ran")
    work = tmp_path / "corpus"
    work.mkdir()
    for name, content in corpus:
        (work / name).write_bytes(content)
    proc = subprocess.run(
        [sys.executable, str(FUZZ / target), f"-runs={runs}", "-max_total_time=90", "-seed=1",
         f"-artifact_prefix={tmp_path}/", *extra, str(work)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert proc.returncode == 0 and not findings, f"{target} found {findings}:\n{proc.stderr[-3000:]}"
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done, proc.stderr[-2000:]
    return int(done.group(1))


def test_atheris_vmdata_parser(tmp_path: Path, tally) -> None:
    corpus = [
        ("sample.json", json.dumps(GOOD).encode()),
        ("sample.yaml", yaml.safe_dump(GOOD).encode()),
        ("triples.json", json.dumps([["metadata", "vm-id", "x"], ["password", "vm_password", "p"]]).encode()),
    ] + [(f"hostile-{i}", c) for i, c in enumerate(HOSTILE_FILES.values()) if len(c) <= 2048]
    runs = _fuzz("fuzz_vmdata.py", 50000, corpus, tmp_path)
    assert runs >= 50000
    tally.add("hostile", "atheris: VmData.from_text", iterations=runs)


def test_atheris_read_iso(tmp_path: Path, tally) -> None:
    corpus = [("sample.iso", build_iso(sd.sample_vmdata())), ("minimal.iso", build_iso(sd.minimal_vmdata()))]
    corpus += [(f"bad-{i}", c) for i, c in enumerate(_corruptions().values()) if len(c) < 200_000]
    runs = _fuzz("fuzz_read_iso.py", 40000, corpus, tmp_path, "-max_len=200000")
    assert runs >= 40000
    tally.add("hostile", "atheris: read_iso", iterations=runs)

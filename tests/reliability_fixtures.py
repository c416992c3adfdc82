"""Helpers and fixtures for the reliability tests (issue 6): counting and interrupting the tool's vSphere calls,
running the real CLI (in process or as a child process that can be SIGKILLed at a given call), reading a VM's
config-drive state with the harness's own pyVmomi session, and a tally of what ran (a pytest plugin loaded from
conftest.py).

The tally (interruption points, hypothesis examples, fuzz iterations …) is printed at the end of the run and
written to ``.cache/reliability-tally.json``; docs/reliability.md quotes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from tool_fixtures import fetch_file, folder_listing, record_of, settings_for
from vsphere_harness import Vcsim, cdroms, connect, create_vm, destroy_vm, disconnect, get_property

from esxi_configdrive import VmData, build_iso, read_iso
from esxi_configdrive.iso import read_drive
from esxi_configdrive.record import DriveRecord
from esxi_configdrive.transport import Transport
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere.datastore import DatastoreFiles
from esxi_configdrive.vsphere_values import DatastorePath

REPO = Path(__file__).resolve().parents[1]
TALLY_FILE = REPO / ".cache" / "reliability-tally.json"
CLI = str(Path(sys.executable).with_name("esxi-configdrive"))

# SOAP methods and /folder verbs that change something in vSphere.
WRITING_METHODS = frozenset(
    {
        "ReconfigVM_Task",
        "MakeDirectory",
        "DeleteDatastoreFile_Task",
        "CopyDatastoreFile_Task",
        "MoveDatastoreFile_Task",
        "RelocateVM_Task",
        "AnswerVM",
        "CreateVM_Task",
        "Destroy_Task",
    }
)
WRITING_VERBS = frozenset({"PUT", "POST", "DELETE"})


# ---- interrupting the tool ----------------------------------------------------------------------------------


class Crash(BaseException):
    """Injected after a vSphere call. A BaseException (not an Exception), so no ``except Exception`` in the
    tool catches it: what runs after the injection point is exactly what a killed process would not run."""


class CallTap:
    """Counts the vSphere calls of one Session: every SOAP call (``Session.call``) and every datastore HTTP
    exchange (``DatastoreFiles._exchange``). ``crash_after=k`` raises Crash once the k-th call has returned
    (or failed): vSphere has done the call, the tool never learns it. ``before_each(n, what)`` runs before
    the n-th call (e.g. to expire the sessions). Other sessions (the test's checks) are not counted."""

    def __init__(
        self,
        session: Session,
        *,
        crash_after: int | None = None,
        before_each: Callable[[int, str], None] | None = None,
    ) -> None:
        self.session = session
        self.crash_after = crash_after
        self.before_each = before_each
        self.calls: list[str] = []
        self.crashed = False
        self._saved: tuple[Any, Any] | None = None

    @property
    def count(self) -> int:
        return len(self.calls)

    def _around(self, what: str, run: Callable[[], Any]) -> Any:
        n = len(self.calls) + 1
        if self.before_each is not None:
            self.before_each(n, what)
        self.calls.append(what)
        try:
            return run()
        finally:
            if n == self.crash_after:
                self.crashed = True
                raise Crash(f"interrupted after call {n} ({what})")  # replaces the call's outcome

    def __enter__(self) -> CallTap:
        tap = self
        original_call, original_exchange = Session.call, DatastoreFiles._exchange

        def call(session: Session, fn: Callable[[], Any], what: str = "vSphere call") -> Any:
            if session is not tap.session:
                return original_call(session, fn, what)
            return tap._around(what, lambda: original_call(session, fn, what))

        def exchange(files: DatastoreFiles, fn: Any, what: str, path: DatastorePath) -> Any:
            if files.session is not tap.session:
                return original_exchange(files, fn, what, path)
            return tap._around(f"HTTP {what} {path}", lambda: original_exchange(files, fn, what, path))

        self._saved = (original_call, original_exchange)
        Session.call = call  # type: ignore[method-assign]
        DatastoreFiles._exchange = exchange  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        Session.call, DatastoreFiles._exchange = self._saved  # type: ignore[method-assign]


@contextlib.contextmanager
def tool_session(sim: Vcsim, **overrides: Any) -> Iterator[Session]:
    """A Session of the tool's own, logged in to the harness, logged out afterwards."""
    session = Session(settings_for(sim, **overrides)).connect()
    try:
        yield session
    finally:
        with contextlib.suppress(Exception):  # an expired or crashed session may not log out
            session.close()


# ---- the CLI ------------------------------------------------------------------------------------------------


@dataclass
class CliRun:
    status: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)


def cli_env(sim: Vcsim | None = None, **extra: str) -> dict[str, str]:
    """A clean environment: PATH and locale only (none of this machine's REQUESTS_CA_BUNDLE, SSL_CERT_FILE …),
    plus the harness's GOVC_* variables when ``sim`` is given."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/")}
    if sim is not None:
        env.update(GOVC_URL=sim.url, GOVC_USERNAME=sim.username, GOVC_PASSWORD=sim.password)
        if sim.ca_file:
            env["GOVC_TLS_CA_CERTS"] = sim.ca_file
    env.update(extra)
    return env


def run_cli(args: Sequence[str], env: dict[str, str], cwd: str | os.PathLike[str] | None = None) -> CliRun:
    """The installed ``esxi-configdrive`` as a child process (bounded)."""
    proc = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def cli_in_process(args: Sequence[str], env: dict[str, str]) -> CliRun:
    """``cli.main(args)`` in this process with exactly ``env`` as the environment (restored afterwards): faster
    than a child process, same code."""
    from esxi_configdrive import cli

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(list(args))
    return CliRun(status, out.getvalue(), err.getvalue())


# The CLI in a child process that stops itself (SIGSTOP) right after its k-th vSphere call returns, so the test
# can read the harness's request counters at that exact point and then SIGKILL it: no finally block, no atexit,
# no logout runs, as when an admin's machine dies.
_STOPPING_CLI = r"""
import os, signal, sys
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere.datastore import DatastoreFiles

stop_after = int(os.environ.pop("RELIABILITY_STOP_AFTER"))
calls = 0

def counted(original):
    def wrapper(*args, **kwargs):
        global calls
        try:
            return original(*args, **kwargs)
        finally:
            calls += 1
            if calls == stop_after:
                os.kill(os.getpid(), signal.SIGSTOP)
    return wrapper

Session.call = counted(Session.call)
DatastoreFiles._exchange = counted(DatastoreFiles._exchange)
from esxi_configdrive.cli import main
sys.argv[0] = "esxi-configdrive"
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class KilledRun:
    killed: bool  # False: the command finished before its k-th call
    status: int | None  # exit status when it finished
    requests_at_kill: int | None  # the harness's SOAP + /folder request count when the process was stopped
    err: str


def run_cli_killed_after(
    sim: Vcsim, args: Sequence[str], env: dict[str, str], k: int, tmp: Path, timeout: float = 60
) -> KilledRun:
    """Run the CLI, SIGKILL it when its k-th vSphere call has returned (see _STOPPING_CLI)."""
    sim.reset_faults()  # counters to zero
    err_path = tmp / f"stderr-{k}"
    with open(err_path, "w") as err, open(os.devnull, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _STOPPING_CLI, *args],
            env={**env, "RELIABILITY_STOP_AFTER": str(k)},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the CLI neither stopped nor ended within {timeout} s")
            time.sleep(0.005)
        if os.WIFSTOPPED(status):
            counters = sim.counters()
            os.kill(proc.pid, signal.SIGKILL)
            os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            total = counters["soap_calls"] + sum(counters["folder_requests"].values())
            return KilledRun(True, None, total, err_path.read_text())
        proc.returncode = os.waitstatus_to_exitcode(status)
        return KilledRun(False, proc.returncode, None, err_path.read_text())
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait(10)


# ---- a test's own VMs -------------------------------------------------------------------------------------------


class Bed:
    """The harness, the test's own pyVmomi session (renewed when a test expires every session), and VMs of
    the test's own, destroyed at the end."""

    def __init__(self, sim: Vcsim, si: vim.ServiceInstance) -> None:
        self.sim, self.si = sim, si
        self.made: list[str] = []
        self.datastore: str | None = None  # a datastore only one host mounts (migration, moves)

    def make_vm(self, **options: Any) -> vim.VirtualMachine:
        vm = create_vm(self.si, **options)
        self.made.append(vm._moId)
        return vm

    def reconnect(self) -> None:
        disconnect(self.si)
        self.si = connect(self.sim)

    def state(self, vm: vim.VirtualMachine):
        return drive_state(self.sim, self.si, vm)


@pytest.fixture
def bed(vcsim_faults: Vcsim) -> Iterator[Bed]:
    b = Bed(vcsim_faults, connect(vcsim_faults))
    yield b
    vcsim_faults.reset_faults()
    b.reconnect()
    try:
        for moid in b.made:
            destroy_vm(b.si, vim.VirtualMachine(moid, b.si._stub))
    finally:
        disconnect(b.si)


# ---- what a VM looks like --------------------------------------------------------------------------------------


def iso_of(data: VmData, transport: Transport = Transport.CONFIGDRIVE) -> bytes:
    """The exact bytes the tool writes for ``data`` over ``transport`` on the test bed's VMs (drives are
    reproducible). Those VMs are Linux guests (otherLinux64Guest), so attach leaves meta_data.json's admin_pass
    out (``--admin-pass auto``)."""
    return build_iso(data.copy(admin_pass=False) if data.password else data, transport=transport)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class DriveState:
    """A VM's CD-ROMs and drive record, read through the harness's own session."""

    first: tuple  # the VM's own CD-ROM (IDE 0:0): key, backing type, file, connected
    others: list[vim.vm.device.VirtualCdrom]
    record: dict[str, str]
    power_state: str
    files: dict[str, bytes | None] = field(default_factory=dict)  # ISO backing path -> content (None: missing)

    @property
    def iso_backed(self) -> list[vim.vm.device.VirtualCdrom]:
        return [d for d in self.others if isinstance(d.backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)]


def first_cdrom(vm: vim.VirtualMachine) -> tuple:
    d = next(c for c in cdroms(vm) if c.controllerKey == 200 and c.unitNumber == 0)
    return (d.key, type(d.backing).__name__, getattr(d.backing, "fileName", None), d.connectable.connected)


def drive_state(sim: Vcsim, si: vim.ServiceInstance, vm: vim.VirtualMachine) -> DriveState:
    vm = vim.VirtualMachine(vm._moId, si._stub)  # read through this session, whoever made the reference
    first = first_cdrom(vm)
    others = [c for c in cdroms(vm) if c.key != first[0]]
    state = DriveState(first, others, record_of(si, vm), str(get_property(si, vm, "runtime.powerState")))
    for d in cdroms(vm):
        if isinstance(d.backing, vim.vm.device.VirtualCdrom.IsoBackingInfo):
            state.files[d.backing.fileName] = fetch_file(sim, si, d.backing.fileName)
    return state


def assert_consistent(state: DriveState, first: tuple, contents: Sequence[bytes]) -> None:
    """What must hold at any moment, even right after a crash: at most one drive besides the VM's own, whose
    ISO exists, is complete and holds one of ``contents``; the record names it; the first CD-ROM untouched."""
    assert state.first == first, "the VM's own CD-ROM changed"
    assert len(state.others) <= 1, f"{len(state.others)} config-drive CD-ROMs"
    for path, content in state.files.items():
        assert content is not None, f"a CD-ROM points at {path}, which does not exist"
        read_iso(content)  # complete and readable (raises otherwise)
        assert content in contents, f"{path} holds neither the old nor the new drive"
    for d in state.iso_backed:
        assert state.record.get("iso") == d.backing.fileName, "the record does not name the attached ISO"
        assert state.record.get("sha256") == sha256(state.files[d.backing.fileName] or b"")
        # the record's transport is the attached ISO's (none recorded: a config drive), swapped with it
        transport = read_drive(state.files[d.backing.fileName] or b"")[0]
        assert state.record.get("transport", "") == DriveRecord.transport_value(transport)


def assert_attached(state: DriveState, first: tuple, content: bytes, si: vim.ServiceInstance, powered_on: bool) -> str:
    """The end state of attach/update: one connected drive holding ``content``, nothing else in its folder."""
    assert_consistent(state, first, [content])
    assert len(state.iso_backed) == 1, "no config drive attached"
    drive = state.iso_backed[0]
    assert drive.connectable.startConnected is True
    assert bool(drive.connectable.connected) is powered_on
    path = DatastorePath.parse(drive.backing.fileName)
    assert folder_listing(si, str(path.folder)) == [path.name], "an orphan ISO is left in the drive's folder"
    return drive.backing.fileName


def assert_no_drive(
    state: DriveState, first: tuple, si: vim.ServiceInstance, folder: str, keep_empty: bool, removed: bool = False
) -> None:
    """The end state of detach/remove: no ISO attached and no ISO left in the folder (detach keeps the empty folder
    for the next attach; remove takes it too); ``keep_empty``: an emptied device stays."""
    assert_consistent(state, first, [])
    assert state.iso_backed == []
    assert len(state.others) == (1 if keep_empty else 0)
    assert "iso" not in state.record
    listing = folder_listing(si, folder)
    if removed:
        assert listing is None, f"{folder} is left behind"
    else:
        assert listing in (None, []), f"{folder} still holds {listing}"


def vsphere_writes(counters: dict[str, Any]) -> dict[str, int]:
    """The calls and requests among the harness's counters that change something."""
    out = {m: n for m, n in counters["soap_by_method"].items() if m in WRITING_METHODS and n}
    out.update({f"/folder {v}": n for v, n in counters["folder_requests"].items() if v in WRITING_VERBS and n})
    return out


# ---- the tally --------------------------------------------------------------------------------------------------


class Tally:
    """Counts reported by the tests, by area and scenario (summed over repeats)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))

    def add(self, area: str, scenario: str, **counts: int) -> None:
        row = self.rows[area][scenario]
        for key, value in counts.items():
            row[key] = row.get(key, 0) + int(value)

    def as_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        return {a: {s: dict(c) for s, c in sorted(rows.items())} for a, rows in sorted(self.rows.items())}


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TALLY.rows:
        return
    data = _TALLY.as_dict()
    terminalreporter.section("reliability counts")
    for area, rows in data.items():
        for scenario, counts in rows.items():
            text = ", ".join(f"{k}={v}" for k, v in counts.items())
            terminalreporter.write_line(f"{area:<14} {scenario:<40} {text}")
    with contextlib.suppress(OSError):
        TALLY_FILE.parent.mkdir(parents=True, exist_ok=True)
        TALLY_FILE.write_text(json.dumps(data, indent=2) + "\n")

"""The VM password and the vCenter password leak nowhere: not in argv (no command takes a password value), not in
logs at any level (pyVmomi's, urllib3's and requests' loggers included), not in exception text under faults, not
in --dry-run or --json output (except reset-password's single printed password and inspect --show-password), not
in the cassettes, not in temporary files (none are written). Each secret is searched for in the forms it takes
on a drive or on the wire too: as is, JSON-escaped, URL-quoted, base64, and its MD5 (the Windows checksum file).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import tenacity
from cassette import encoded_forms, find_secrets
from reliability_fixtures import CliRun, cli_env, cli_in_process, run_cli, tool_session
from sample_data import ED25519_KEY
from vsphere_harness import Vcsim

from esxi_configdrive import VmData
from esxi_configdrive.cli import build_parser
from esxi_configdrive.controller import ConfigDriveController

REPO = Path(__file__).resolve().parents[1]
VM_PASSWORD = "Vm-S3cret-Passw0rd-7731"
NEW_PASSWORD = "Upd-S3cret-Passw0rd-8842"
VMDATA = {
    "metadata": {"vm-id": "3f2e1d0c-9b8a-4765-8432-10fedcba9876", "local-hostname": "secret-1"},
    "userdata": "#cloud-config\n",
    "password": VM_PASSWORD,
}
# Options allowed to mention a password: they take a file name, or nothing.
PASSWORD_OPTIONS = {"--password-file": "FILE", "--vc-password-file": "FILE", "--no-password-vendor-data": None,
                    "--show-password": None, "--guestinfo-password": None,  # a switch: send it over guestinfo
                    "--admin-pass": "{auto,yes,no}"}  # fmt: skip  # a choice of where the password goes, not one


def forms(secret: str) -> list[str]:
    """A secret as it may appear: raw, JSON-escaped, URL-quoted, base64, MD5 hex (padded, and CloudStack's
    unpadded BigInteger form)."""
    md5 = hashlib.md5(secret.encode()).hexdigest()
    return sorted(
        {
            secret,
            json.dumps(secret)[1:-1],
            quote(secret, safe=""),
            base64.b64encode(secret.encode()).decode(),
            md5,
            format(int(md5, 16), "x"),
        }
    )


def leaked(text: str, *secrets: str) -> list[str]:
    return [f for s in secrets for f in forms(s) if f in text]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "vm.json").write_text(json.dumps(VMDATA))
    (work / "pw").write_text(NEW_PASSWORD + "\n")
    return work


# ---- argv -----------------------------------------------------------------------------------------------------


def _commands() -> list[str]:
    run = run_cli(["--help"], cli_env())
    assert run.status == 0
    section = run.out.split("positional arguments:", 1)[1].split("options:", 1)[0]
    return re.findall(r"(?m)^    ([a-z][a-z-]+)(?:\s|$)", section)


def test_no_command_takes_a_password_on_the_command_line(tally) -> None:
    commands = _commands()
    assert {"build", "inspect", "attach", "update", "reset-password", "detach", "remove", "status"} <= set(commands)
    seen = 0
    for command in commands:
        run = run_cli([command, "--help"], cli_env())
        assert run.status == 0, run.err
        options = dict(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z0-9-]+)(?: ([A-Z][A-Z0-9_.]*|\{[^}]*\}))?", run.out))
        assert options, run.out
        for name, metavar in options.items():
            seen += 1
            if re.search(r"pass|pwd|secret|token|cred", name):
                assert name in PASSWORD_OPTIONS, f"{command} {name}: a password-looking option"
                assert (metavar or None) == PASSWORD_OPTIONS[name], f"{command} {name} takes {metavar!r}"
    # the same from the parser itself (help text could hide an option)
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command, p in sub.choices.items():
        for action in p._actions:
            for name in action.option_strings:
                if re.search(r"pass|pwd|secret|token|cred", name):
                    assert name in PASSWORD_OPTIONS, f"{command} {name}"
                    takes_value = action.nargs != 0
                    assert takes_value == (PASSWORD_OPTIONS[name] is not None), f"{command} {name}"
    tally.add("secrets", "argv: options of every command checked", cases=seen)


def test_a_password_in_the_url_is_refused_without_echoing_it(vcsim: Vcsim, workdir: Path) -> None:
    env = cli_env()
    run = cli_in_process(["status", "vm", "--url", f"root:{VM_PASSWORD}@{vcsim.netloc}"], env)
    assert run.status == 2 and "url:" in run.err and "password" in run.err
    assert leaked(run.out + run.err, VM_PASSWORD) == []


# ---- logs and output of a full run --------------------------------------------------------------------------


def test_debug_logs_and_outputs_of_a_full_run(vcsim_faults: Vcsim, make_vm, workdir: Path, tally) -> None:
    """The real CLI with -vv (DEBUG for every logger: the tool's, pyVmomi's, urllib3's, requests'): attach,
    update, reset-password (human and --json), status, dry runs, inspect, detach."""
    name = make_vm(powered_on=True).name
    env = cli_env(vcsim_faults)
    vc_password = vcsim_faults.password
    runs: dict[str, CliRun] = {}

    def cli(label: str, *args: str) -> CliRun:
        run = run_cli(["-vv", *args], env, cwd=workdir)
        assert run.status == 0, f"{label}: {run.err[-2000:]}"
        runs[label] = run
        return run

    cli("attach --dry-run --json", "attach", name, "--vmdata", "vm.json", "--dry-run", "--json")
    cli("attach --json", "attach", name, "--vmdata", "vm.json", "--json")
    cli("update --dry-run", "update", name, "--password-file", "pw", "--dry-run")
    cli("update --json", "update", name, "--password-file", "pw", "--json")
    cli("reset-password --dry-run --json", "reset-password", name, "--dry-run", "--json")
    first = cli("reset-password --json", "reset-password", name, "--json").json()["password"]
    second_run = cli("reset-password", "reset-password", name)
    second = re.search(r"(?m)^Password: +(\S+)$", second_run.out).group(1)
    status = cli("status --json", "status", name, "--json")
    cli("status", "status", name)
    iso = status.json()["iso"]
    build = run_cli(["build", "--vmdata", "vm.json", "-o", "out.iso", "--json"], env, cwd=workdir)
    assert build.status == 0
    masked = run_cli(["inspect", "out.iso", "--json"], env, cwd=workdir)
    shown = run_cli(["inspect", "out.iso", "--json", "--show-password"], env, cwd=workdir)
    cli("detach --json", "detach", name, "--json")

    everything = [VM_PASSWORD, NEW_PASSWORD, vc_password, first, second]
    for label, run in runs.items():
        assert leaked(run.err, *everything) == [], f"{label}: a secret in the logs"
        allowed = {"reset-password --json": first, "reset-password": second}.get(label)
        if allowed:
            assert run.out.count(allowed) == 1, f"{label}: the new password must be printed exactly once"
            assert leaked(run.out.replace(allowed, ""), *everything) == []
        else:
            assert leaked(run.out, *everything) == [], f"{label}: a secret on stdout"
    assert "DEBUG urllib3.connectionpool" in runs["attach --json"].err  # DEBUG logging was really on
    assert "PUT /folder/" in runs["attach --json"].err
    assert leaked(masked.out, VM_PASSWORD) == [] and "********" in masked.out
    assert json.loads(shown.out)["password"] == VM_PASSWORD  # only when asked
    assert leaked(build.out + build.err, VM_PASSWORD) == []
    assert iso and first != second
    tally.add("secrets", "CLI runs at -vv searched (logs, stdout)", cases=len(runs) + 3)


# ---- exception text under faults ----------------------------------------------------------------------------


@pytest.fixture
def all_logs() -> Iterator[list[str]]:
    """Every record of every logger at DEBUG, formatted with its traceback."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logging.Formatter("%(levelname)s %(name)s %(message)s").format(record))

    handler = Keep(level=logging.DEBUG)
    names = ["", "esxi_configdrive", "pyVmomi", "urllib3", "requests", "tenacity"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger().removeHandler(handler)
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


FAULTS = {
    "upload 503": {"upload_failures": {"count": 100, "mode": "status"}},
    "upload reset": {"upload_failures": {"count": 100, "mode": "reset"}},
    "reconfigure fails": {"reconfig_failures": {"count": 10, "message": "injected failure"}},
    "locked door": {"locked_door": {"enabled": True}},
    "session expiry": {"session_expiry": {"after_calls": 3, "repeat": True}},
}


def test_exception_text_and_logs_under_faults(
    vcsim_faults: Vcsim, make_vm, monkeypatch: pytest.MonkeyPatch, all_logs: list[str], tally
) -> None:
    monkeypatch.setattr(tenacity.nap, "time", type("NoSleep", (), {"sleep": staticmethod(lambda s: None)}))
    vm_data = VmData.from_dict(VMDATA)
    texts: list[str] = []
    for label, faults in FAULTS.items():
        name = make_vm(powered_on=True).name
        with tool_session(vcsim_faults) as s:
            ConfigDriveController(s).attach(name, vm_data)
        vcsim_faults.reset_faults()
        vcsim_faults.set_faults(**faults)
        try:
            with tool_session(vcsim_faults) as s:
                tool = ConfigDriveController(s, task_timeout=20)
                tool.update(name, overrides={"password": NEW_PASSWORD, "public_keys": [ED25519_KEY]})
                tool.reset_password(name)
        except Exception as e:  # the failure the admin would see
            texts += [str(e), repr(e), "".join(traceback.format_exception(e))]
        else:
            assert label == "session expiry", f"{label}: no failure"
        finally:
            vcsim_faults.reset_faults()
    # a refused login, and an untrusted server
    wrong = cli_in_process(["status", "vm"], cli_env(vcsim_faults, GOVC_PASSWORD=VM_PASSWORD))
    untrusted = cli_in_process(["status", "vm"], {**cli_env(vcsim_faults), "GOVC_TLS_CA_CERTS": ""})
    assert wrong.status == 1 and "refused" in wrong.err and untrusted.status == 1
    texts += [wrong.err, wrong.out, untrusted.err]
    assert len(texts) >= 4 * 3 + 3
    blob = "\n".join(texts + all_logs)
    assert leaked(blob, VM_PASSWORD, NEW_PASSWORD, vcsim_faults.password) == []
    assert any("retrying" in line for line in all_logs)  # the capture saw the tool's logging
    tally.add("secrets", "failures under faults searched (exceptions, tracebacks, logs)", cases=len(FAULTS) + 2)


# ---- cassettes --------------------------------------------------------------------------------------------------


def test_cassettes_hold_no_secret(tally) -> None:
    from test_operations_replay import REPLAY_PASSWORD
    from test_testbed_cassettes import KNOWN_SECRETS

    cassettes = sorted((REPO / "cassettes").glob("*.yaml"))
    assert cassettes
    # plus guestinfo's forms (base64, gzip+base64), and find_secrets decodes every guestinfo value in them
    extra = [f for secret in {REPLAY_PASSWORD, *KNOWN_SECRETS} for f in [*forms(secret), *encoded_forms(secret)]]
    problems = {c.name: find_secrets(c, extra) for c in cassettes}
    assert {k: v for k, v in problems.items() if v} == {}
    tally.add("secrets", "cassettes scanned", cases=len(cassettes))


# ---- temporary files and the working directory -------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_no_temporary_files_and_only_the_requested_output(
    vcsim_faults: Vcsim, make_vm, workdir: Path, tmp_path: Path, tally
) -> None:
    tmp, home = tmp_path / "tmpdir", tmp_path / "home"
    tmp.mkdir()
    home.mkdir()
    env = cli_env(vcsim_faults, TMPDIR=str(tmp), HOME=str(home))
    name = make_vm().name
    before = _snapshot(workdir)
    commands = [
        ["build", "--vmdata", "vm.json", "-o", "out.iso"],
        ["inspect", "out.iso", "--show-password"],
        ["attach", name, "--vmdata", "vm.json"],
        ["update", name, "--password-file", "pw"],
        ["reset-password", name],
        ["status", name, "--json"],
        ["detach", name],
    ]
    for args in commands:
        run = run_cli(args, env, cwd=workdir)
        assert run.status == 0, (args, run.err)
    assert list(tmp.iterdir()) == [] and list(home.iterdir()) == []
    after = _snapshot(workdir)
    assert {k: v for k, v in after.items() if k != "out.iso"} == before  # inputs untouched, nothing added
    assert "out.iso" in after and (workdir / "out.iso").stat().st_mode & 0o077 == 0
    tally.add("secrets", "temporary files: CLI runs with an empty TMPDIR/HOME", cases=len(commands))

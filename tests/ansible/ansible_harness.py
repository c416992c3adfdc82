"""Running the Ansible collection as a user does: built and installed into a temporary collections path, and real
``ansible-playbook`` runs against the vcsim harness (tests/ansible/conftest.py makes fixtures of these).

Every run is checked for secrets: neither the harness's password nor any password a test registers may appear
in ansible-playbook's output (at any verbosity) or in the recorded task results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTION_SRC = ROOT / "ansible_collections" / "esxi_configdrive" / "vsphere"
BIN = Path(sys.executable).parent
GROUP = "group/esxi_configdrive.vsphere.vsphere"
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"


def ansible_tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: ansible-core is in the test extra (scripts/setup installs it)", pytrace=False)
    return str(path)


def install_collection(work: Path) -> Path:
    """The collection built with ``ansible-galaxy collection build`` and installed from the tarball."""
    env = {**clean_env(), "ANSIBLE_HOME": str(work / "home")}
    build = subprocess.run(
        [ansible_tool("ansible-galaxy"), "collection", "build", str(COLLECTION_SRC), "--output-path", str(work)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    tarballs = list(work.glob("esxi_configdrive-vsphere-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    target = work / "collections"
    install = subprocess.run(
        [ansible_tool("ansible-galaxy"), "collection", "install", str(tarballs[0]), "-p", str(target)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    assert (target / "ansible_collections/esxi_configdrive/vsphere/plugins/modules/config_drive.py").is_file()
    return target


def clean_env() -> dict[str, str]:
    """This process's environment without Ansible, VMware or govc settings (they would leak into the runs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "VMWARE_", "GOVC_"))}


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: list[dict[str, Any]] = field(default_factory=list)  # recorded: {"task", "status", "result"}

    def task(self, name: str) -> dict[str, Any]:
        """The one recorded result of the task called ``name`` (its status in ``["_status"]``)."""
        found = self.tasks(name)
        assert len(found) == 1, f"task {name!r}: {len(found)} results\n{self.stdout[-3000:]}"
        return found[0]

    def tasks(self, name: str) -> list[dict[str, Any]]:
        """Every recorded result of the task called ``name`` (one per host)."""
        return [{**r["result"], "_status": r["status"]} for r in self.results if r["task"] == name]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Ansible:
    """Runs playbooks on localhost (the controller, as ``delegate_to: localhost`` does) against the harness."""

    sim: Any
    collections: Path
    work: Path
    secrets: list[str] = field(default_factory=list)
    runs: int = 0

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **clean_env(),
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",  # only the installed copy, never the source tree
            "ANSIBLE_HOME": str(self.work / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.work / "ansible-tmp"),
            "ANSIBLE_PIPELINING": "true",  # module arguments go through a pipe, not a file
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
            "ANSIBLE_CALLBACKS_ENABLED": "record_results",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            # the vCenter credentials come from the environment, as community.vmware's do (never argv or a file)
            "VMWARE_USER": self.sim.username,
            "VMWARE_PASSWORD": self.sim.password,
            **(extra or {}),
        }

    def connection_defaults(self) -> dict[str, Any]:
        return {"hostname": self.sim.host, "port": self.sim.port, "ca_file": self.sim.ca_file}

    def run(
        self,
        tasks: list[dict[str, Any]],
        *,
        check: bool = False,
        diff: bool = False,
        verbosity: int = 0,
        env: dict[str, str] | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> PlaybookRun:
        """One ``ansible-playbook`` run of ``tasks`` on localhost; the module defaults give the connection."""
        play = {"name": "test", "hosts": "localhost", "gather_facts": False, "tasks": tasks}
        options = ["--check"] * check + ["--diff"] * diff + ([f"-{'v' * verbosity}"] if verbosity else [])
        return self.playbook([self.with_defaults(play, defaults)], options=options, env=env)

    def with_defaults(self, play: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """The play with the connection as module defaults of the collection's action group."""
        return {**play, "module_defaults": {GROUP: {**self.connection_defaults(), **(defaults or {})}}}

    def playbook(
        self,
        plays: list[dict[str, Any]],
        *,
        inventory: dict[str, Any] | None = None,
        options: Iterable[str] = (),
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> PlaybookRun:
        """Run ``plays``; ``inventory`` (groups, as in a YAML inventory) is added beside a localhost that runs
        modules with this Python."""
        self.runs += 1
        playbook = self.work / f"playbook-{self.runs}.yml"
        playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
        record = self.work / f"results-{self.runs}.jsonl"
        localhost = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        hosts = self.work / f"inventory-{self.runs}.yml"  # inventory variables: a task's vars may override them
        tree = {"all": {"hosts": {"localhost": localhost}, "children": inventory or {}}}
        hosts.write_text(yaml.safe_dump(tree, sort_keys=False))
        args = [ansible_tool("ansible-playbook"), "-i", str(hosts), str(playbook), *options]
        proc = subprocess.run(
            args, env=self.env({"RECORD_RESULTS_FILE": str(record), **(env or {})}), cwd=self.work,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        results = [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []
        run = PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)
        self.check_no_secrets(run)
        return run

    def check_no_secrets(self, run: PlaybookRun) -> None:
        recorded = json.dumps(run.results)
        for secret in [self.sim.password, *self.secrets]:
            # booleans first: pytest would print the compared strings, the password among them
            in_output, in_results = secret in run.output, secret in recorded
            assert not in_output, "a password appears in ansible-playbook's output"
            assert not in_results, "a password appears in a task result"

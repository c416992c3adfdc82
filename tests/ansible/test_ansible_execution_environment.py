"""The collection declares what an execution environment (AWX, Ansible Automation Platform) needs, as
community.vmware does: ``meta/execution-environment.yml`` pointing at ``requirements.txt``, which names this
package. ``ansible-builder introspect`` (what ``ansible-builder build`` runs on every collection it installs) reads
it offline, from the built and installed collection as from the source tree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from ansible_harness import COLLECTION_SRC, clean_env

ROOT = Path(__file__).resolve().parents[2]
BUILDER = Path(sys.executable).parent / "ansible-builder"


def introspect(collections: Path) -> dict:
    """ansible-builder's view of the collections under ``collections``, with every network route refused."""
    assert BUILDER.exists(), "ansible-builder is in the test extra (pyproject.toml): run scripts/setup"
    offline = {
        **clean_env(),
        "PIP_NO_INDEX": "1",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    proc = subprocess.run([str(BUILDER), "introspect", str(collections)], env=offline, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout.split("---", 1)[1])


def test_the_collection_declares_the_package_for_an_execution_environment(collections_path: Path) -> None:
    package = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
    meta = yaml.safe_load((COLLECTION_SRC / "meta/execution-environment.yml").read_text())
    assert meta == {"version": 1, "dependencies": {"python": "requirements.txt"}}
    expected = f"{package}  # from collection esxi_configdrive.vsphere"
    for where in (collections_path, ROOT):  # the installed collection (what ansible-builder gets), the source
        found = introspect(where)
        assert expected in found["python"], found
        assert found["system"] == []

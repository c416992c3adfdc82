"""``ansible-test sanity`` for the collection, every test ansible-test has for it.

ansible-test gives each sanity test a virtual environment with pinned requirements from PyPI (kept under
.cache/ansible-test-home between runs: the first run takes minutes, later ones seconds). It bootstraps pip in
those from a script it downloads from a host this machine cannot reach; ``get_pip_standin.py`` takes its place.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_test._internal.python_requirements as requirements
from ansible_harness import BIN, COLLECTION_SRC, ROOT, clean_env

HOME = ROOT / ".cache" / "ansible-test-home"
# The tests that find files to check in this collection (changelog, empty-init, pslint and shellcheck find none).
CHECKED = (
    "action-plugin-docs", "ansible-doc", "compile", "ignores", "import", "line-endings", "no-assert",
    "no-get-exception", "no-illegal-filenames", "no-smart-quotes", "pep8", "pylint", "replace-urlopen",
    "runtime-metadata", "shebang", "symlinks", "use-argspec-type-path", "use-compat-six", "validate-modules",
    "yamllint",
)  # fmt: skip
NOT_APPLICABLE = ("changelog", "empty-init", "pslint", "shellcheck")


def install_pip_standin() -> None:
    """Put the stand-in where ansible-test looks for its cached bootstrap script (named by the pip version)."""
    source = Path(requirements.__file__).read_text()
    version = re.search(r"pip='([\d.]+)'", source)
    assert version, "cannot tell which pip version ansible-test bootstraps"
    cache = HOME / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        Path(__file__).with_name("get_pip_standin.py"), cache / f"get_pip_{version[1].replace('.', '_')}.py"
    )


def test_ansible_test_sanity_passes():
    install_pip_standin()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {**clean_env(), "HOME": str(HOME), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(BIN / "ansible-test"), "sanity", "--python", python, "-v"],
        cwd=COLLECTION_SRC, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    # each test's section of the output, by name; "No tests applicable." in it: it found nothing to check
    sections = dict(
        re.findall(r'^Running sanity test "([\w-]+)"[^\n]*\n(.*?)(?=^Running sanity test|\Z)', proc.stdout, re.M | re.S)
    )
    assert sorted(sections) == sorted(CHECKED + NOT_APPLICABLE), sorted(sections)
    empty = [name for name, text in sections.items() if "No tests applicable." in text]
    assert sorted(empty) == sorted(NOT_APPLICABLE), empty  # a test that stopped finding files would pass unchecked
    assert "Checking 2 file(s) in context 'modules'" in proc.stdout  # pylint saw both modules

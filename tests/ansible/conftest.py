"""Fixtures for the Ansible collection's playbook tests (the helpers are in ansible_harness.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible_harness import Ansible, install_collection


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built with ``ansible-galaxy collection build`` and installed from the tarball."""
    return install_collection(tmp_path_factory.mktemp("collection"))


@pytest.fixture
def ansible(vcsim_faults: Any, collections_path: Path, tmp_path: Path) -> Ansible:
    """ansible-playbook runs against the session's harness (faults reset)."""
    return Ansible(vcsim_faults, collections_path, tmp_path)

"""The Ansible collection keeps some values as literals (ansible-test's validate-modules compares the DOCUMENTATION
with the argument_spec, and imports the modules where the package is not installed): each must equal the package's
one definition, so that the module, the CLI and batch lines accept the same values."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from esxi_configdrive import defaults
from esxi_configdrive.transport import TRANSPORT_CHOICES

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the collection's own import path: ansible_collections.esxi_configdrive.vsphere

from ansible_collections.esxi_configdrive.vsphere.plugins.modules import config_drive  # noqa: E402


def test_the_module_options_use_the_packages_choices_and_defaults() -> None:
    spec = config_drive.argument_spec()
    assert tuple(spec["controller"]["choices"]) == defaults.CONTROLLER_CHOICES
    assert tuple(spec["admin_pass"]["choices"]) == defaults.ADMIN_PASS_CHOICES
    # update's choices without "keep" (the option's unset value): the module has no separate update switch
    assert [c for c in defaults.NETWORK_DATA_CHOICES["update"] if c != "keep"] == spec["network_data"]["choices"]
    assert set(spec["network_data"]["choices"]) - {"none"} <= set(defaults.NETWORK_DATA_CHOICES["attach"])
    assert tuple(spec["transport"]["choices"]) == TRANSPORT_CHOICES
    assert spec["transport"].get("default") is None  # unset: configdrive on attach, the drive's own on update
    assert spec["password_length"]["default"] == defaults.PASSWORD_LENGTH
    assert spec["task_timeout"]["default"] == defaults.DEFAULT_TASK_TIMEOUT
    assert spec["concurrency"]["default"] == defaults.DEFAULT_CONCURRENCY


def test_the_documentation_states_the_packages_limits() -> None:
    doc = yaml.safe_load(config_drive.DOCUMENTATION)["options"]
    length = " ".join(doc["password_length"]["description"])
    assert f"({defaults.MIN_PASSWORD_LENGTH} to {defaults.MAX_PASSWORD_LENGTH})" in length
    concurrency = " ".join(doc["concurrency"]["description"])
    assert f"(1 to {defaults.MAX_CONCURRENCY})" in concurrency
    for option in (
        "password_length",
        "task_timeout",
        "concurrency",
        "controller",
        "admin_pass",
        "network_data",
        "transport",
    ):
        spec = config_drive.argument_spec()[option]
        assert doc[option].get("default") == spec.get("default"), option
        assert doc[option].get("choices") == spec.get("choices"), option
    assert not re.search(r"\b(12|128|64)\b", Path(config_drive.__file__).read_text().split('"""', 6)[-1])

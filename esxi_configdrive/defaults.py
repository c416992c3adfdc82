"""Choices and defaults shared by the command line, batch lines, the Python API and the Ansible modules: each
is defined here once. Importing this module costs nothing (no vSphere library)."""

from __future__ import annotations

DEFAULT_LABEL = "config-2"
DEFAULT_MAX_USERDATA_BYTES = 1024 * 1024  # CloudStack's POST limit, after decoding
MAX_ISO_BYTES = 64 * 1024 * 1024  # CloudStack refuses bigger config drives

DEFAULT_TASK_TIMEOUT = 600.0  # seconds one vSphere task may take before its outcome counts as unknown
DEFAULT_MAX_ATTEMPTS = 5  # reads-and-retries when the VM changes under an operation (changeVersion)
# audit --fix deletes an orphan ISO only once it is this old: a run between its upload and the reconfigure that
# points at it holds an ISO no VM references yet, for at most its task timeout (600 s) per attempt.
ORPHAN_MIN_AGE = 24 * 3600.0
DEFAULT_CONCURRENCY = 4  # batch mode: VMs at a time
MAX_CONCURRENCY = 64
# batch mode's automatic worker processes: one per this many VMs at a time, up to the cores (batch_processes.py)
THREADS_PER_PROCESS = 16

CONTROLLER_CHOICES = ("auto", "ide", "sata")
ADMIN_PASS_CHOICES = ("auto", "yes", "no")

# --network-data: what the drive's network_data.json holds.
#   file   the VM data's network data or `network` section (none: no file, so cloud-init falls back to DHCP)
#   keep   update: what the drive has
#   auto   DHCP on every NIC, links carrying the VM's real MACs (vSphere commands only)
#   empty  CloudStack's `{}` (cloud-init then configures no network at all)
#   none   update: no network_data.json any more
NETWORK_DATA_CHOICES = {
    "build": ("file", "empty"),
    "attach": ("file", "auto", "empty"),
    "update": ("keep", "auto", "empty", "none"),
}

PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH = 20, 12, 128  # reset-password

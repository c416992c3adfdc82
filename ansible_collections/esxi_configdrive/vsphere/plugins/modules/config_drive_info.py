#!/usr/bin/python
"""Read-only: the config drive of one VM, or of every VM in a datacenter or folder."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_drive_info
short_description: Read the config drive of one VM, or of every VM in a datacenter or folder
version_added: 0.1.0
description:
  - Reads what the C(esxi-configdrive) package's C(status) command shows for a VM's config drive; the CD-ROM
    (controller, bus, unit, connection), its ISO (path, size, SHA-256, whether it matches the drive's record)
    and a summary of the content (label, ids, host name, number of SSH keys, user data size, whether a password
    is set; never the password).
  - With O(name), O(uuid) or O(moid), one VM. Without, every VM under O(folder), else under O(datacenter), else
    in the whole inventory.
  - Changes nothing.
author:
  - esxi-configdrive developers (!UNKNOWN)
options:
  name:
    description:
      - The VM's name, or its inventory path (C(DC0/vm/web/web-1)). At most one of O(name), O(uuid), O(moid).
    type: str
  uuid:
    description:
      - The VM's instance UUID (else its BIOS UUID).
    type: str
  moid:
    description:
      - The VM's managed object id, such as C(vm-42).
    type: str
  folder:
    description:
      - With O(name), the folder that holds the VM; without a VM, read every VM under this folder.
      - An inventory path (C(/DC0/vm/web)), or relative to O(datacenter)'s VM folder (C(web)).
    type: str
  datacenter:
    description:
      - Without a VM or O(folder), read every VM of this datacenter; also what O(folder) is relative to.
    type: str
  concurrency:
    description:
      - For many VMs, how many are read at a time (1 to 64).
    type: int
    default: 8
extends_documentation_fragment:
  - esxi_configdrive.vsphere.connection
attributes:
  check_mode:
    description: The module changes nothing; it runs in check mode too.
    support: full
notes:
  - Each VM costs one collector call, plus one ISO download when it has a drive; a read of many VMs in a few
    collector calls is planned (the package's C(audit) command).
seealso:
  - module: esxi_configdrive.vsphere.config_drive
"""

EXAMPLES = r"""
- name: The drive of web-1
  esxi_configdrive.vsphere.config_drive_info:
    hostname: vcenter.example.com
    username: automation@vsphere.local
    password: "{{ vcenter_password }}"
    name: web-1
  register: web1
  delegate_to: localhost

- name: Fail when web-1's drive is not attached or its ISO is broken
  ansible.builtin.assert:
    that:
      - web1.drives[0].attached
      - web1.drives[0].matches_record
  delegate_to: localhost

- name: Every VM of datacenter DC0, 8 at a time
  esxi_configdrive.vsphere.config_drive_info:
    datacenter: DC0
  register: fleet
  delegate_to: localhost

- name: The VMs whose drive has a problem
  ansible.builtin.debug:
    msg: "{{ fleet.drives | selectattr('problem', 'defined') | map(attribute='vm') | list }}"
"""

RETURN = r"""
drives:
  description:
    - One entry per VM (sorted by name), as C(esxi-configdrive status --json) prints it.
    - A VM that could not be read has C(error) (one line) and C(exit_status) instead.
  returned: always
  type: list
  elements: dict
  contains:
    vm:
      description: The VM's name.
      type: str
    moid:
      description: The VM's managed object id.
      type: str
      returned: when no VM is named
    power_state:
      description: C(poweredOn), C(poweredOff) or C(suspended).
      type: str
    attached:
      description: Whether the drive's CD-ROM has an ISO.
      type: bool
    iso:
      description: The datastore path of the attached ISO.
      type: str
    device:
      description: The drive's CD-ROM (key, controller, bus, unit, label, connected, start_connected, iso), or null.
      type: dict
    record:
      description: What the VM's extraConfig records about the drive (iso, digest, sha256, size, owner, device,
        previous, folder).
      type: dict
    file_exists:
      description: Whether the ISO the CD-ROM points at exists.
      type: bool
    file_bytes:
      description: The ISO's size.
      type: int
    sha256:
      description: The ISO's SHA-256.
      type: str
    matches_record:
      description: Whether the ISO is the one the record names (its SHA-256).
      type: bool
    problem:
      description: What is wrong with the drive (a missing or unreadable ISO), when something is.
      type: str
    content:
      description: The drive's content, summarised (label, vm_id, instance_id, hostname, public_keys (a count),
        userdata_bytes, password_set).
      type: dict
  sample:
    - vm: web-1
      moid: vm-42
      changed: false
      power_state: poweredOn
      attached: true
      iso: "[LocalDS_0] ConfigDrive/web-1/configdrive.iso"
      device: {key: 16000, controller: sata, bus: 0, unit: 0, label: CD/DVD drive 2, connected: true,
               start_connected: true, iso: "[LocalDS_0] ConfigDrive/web-1/configdrive.iso"}
      file_exists: true
      matches_record: true
      content: {label: config-2, vm_id: 7c1e4a52-9a3f-4c55-8d2e-0d6b9d1f3a10, hostname: web-1, public_keys: 1,
                userdata_bytes: 42, password_set: true}
summary:
  description: Counts over RV(drives) (VMs read, with a drive attached, with a problem, that could not be read).
  returned: always
  type: dict
  sample: {total: 200, attached: 198, problem: 1, failed: 0}
"""

from typing import Any  # noqa: E402 - ansible-test wants the documentation first

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils import fleet  # noqa: E402
from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils.common import (  # noqa: E402
    connection_spec,
    controller,
    fail,
    require_package,
    vm_identity,
    vm_spec,
)


def argument_spec() -> dict[str, Any]:
    return {**connection_spec(), **vm_spec(), "concurrency": {"type": "int", "default": 8}}


def read(params: dict[str, Any]) -> list[dict[str, Any]]:
    named = vm_identity(params)
    concurrency = params["concurrency"] if named is None else 1
    with controller(params) as c:
        if named is not None:
            return [c.status(named[1]).to_dict()]
        vms = fleet.vms_under(c.session, fleet.container_path(params["datacenter"], params["folder"]))
        return fleet.read_all(c, vms, concurrency)


def summary(drives: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "total": len(drives),
        "attached": sum(1 for d in drives if d.get("attached")),
        "problem": sum(1 for d in drives if d.get("problem")),
        "failed": sum(1 for d in drives if "error" in d),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=[("name", "uuid", "moid")]
    )
    require_package(module)
    vm_option = next((k for k in ("name", "uuid", "moid") if module.params[k]), "name")
    try:
        drives = read(module.params)
    except Exception as e:  # one line for the admin, never a traceback
        fail(module, e, vm_option=vm_option)
    module.exit_json(changed=False, drives=drives, summary=summary(drives))


if __name__ == "__main__":
    main()

#!/usr/bin/python
"""Read-only: the config drive of one VM, or of every VM in a datacenter or folder."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_drive_info
short_description: Read the config drive of one VM, or of every VM in a datacenter or folder
version_added: 0.1.0
description:
  - With O(name), O(uuid) or O(moid), one VM, as the C(esxi-configdrive) package's C(status) command shows
    its config drive - the CD-ROM (controller, bus, unit, connection), its ISO (path, size, SHA-256, whether it
    matches the drive's record) and a summary of the content (label, ids, host name, number of SSH keys, user
    data size, whether a password is set; never the password).
  - Without a VM, every config drive under O(folder), else in O(datacenter), else in every datacenter, as the
    package's C(audit) command reads them, one entry per VM that has a drive, a drive record or files under
    C(ConfigDrive/), with its state (C(ok), C(detached), C(device-removed), C(missing-file), C(foreign-change),
    C(disconnected), C(not-shared), C(inherited), C(unchecked)), and one per orphan ISO or folder (C(orphan),
    not judged with O(folder)). A few collector calls and one datastore search per datastore, whatever the
    number of VMs.
  - Changes nothing.
author:
  - esxi-configdrive developers (!UNKNOWN)
options:
  name:
    description:
      - The VM's name, or its inventory path (C(DC0/vm/web/web-1)). At most one of O(name), O(uuid), O(moid).
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
extends_documentation_fragment:
  - esxi_configdrive.vsphere.connection
  - esxi_configdrive.vsphere.vm
attributes:
  check_mode:
    description: The module changes nothing; it runs in check mode too.
    support: full
notes:
  - One VM costs one collector call and one ISO download; the fleet read does not grow with the number of VMs
    (the sizes the datastore search reports are compared with the records; no ISO is downloaded).
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

- name: Every config drive of datacenter DC0
  esxi_configdrive.vsphere.config_drive_info:
    datacenter: DC0
  register: fleet
  delegate_to: localhost

- name: The VMs whose drive needs attention (removed by another tool, missing, changed, not on a shared datastore)
  ansible.builtin.debug:
    msg: "{{ fleet.drives | selectattr('attention') | map(attribute='vm') | list }}"
"""

RETURN = r"""
drives:
  description:
    - With a VM named, one entry as C(esxi-configdrive status --json) prints it (RV(drives[].attached),
      RV(drives[].iso), C(device), C(record), C(file_exists), C(file_bytes), C(sha256), C(matches_record),
      C(problem), C(content)).
    - Without, one entry per finding of the fleet read, as C(esxi-configdrive audit --json) prints it.
  returned: always
  type: list
  elements: dict
  contains:
    vm:
      description: The VM's name (an orphan's entry names the VMs whose name its folder stands for, if any).
      type: str
    attached:
      description: Whether the drive's CD-ROM has an ISO (one VM).
      type: bool
    iso:
      description: The datastore path of the attached ISO (one VM).
      type: str
    state:
      description: The drive's state, or C(orphan) (fleet).
      type: str
    attention:
      description: Whether the entry needs attention (fleet).
      type: bool
    path:
      description: The ISO or orphan the entry is about (fleet).
      type: str
    notes:
      description: What was found, in words (fleet).
      type: list
      elements: str
  sample:
    - vm: web-1
      id: vm-42
      datacenter: DC0
      state: ok
      attention: false
      path: "[LocalDS_0] ConfigDrive/web-1/configdrive.iso"
      size: 360448
      notes: []
      fix: null
summary:
  description:
    - One VM - C(total), C(attached), C(problem).
    - Fleet - C(vms) read, C(datastores) searched, C(attention) (entries needing it), C(states) (entries by
      state), C(notes) (what was not judged and why).
  returned: always
  type: dict
  sample: {vms: 200, datastores: 1, attention: 1, states: {ok: 198, device-removed: 1, orphan: 1}, notes: []}
"""

from typing import Any  # noqa: E402 - ansible-test wants the documentation first

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils.common import (  # noqa: E402
    connection_spec,
    controller,
    fail,
    require_package,
    vm_identity,
    vm_spec,
)


def argument_spec() -> dict[str, Any]:
    return {**connection_spec(), **vm_spec()}


def read(params: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    named = vm_identity(params)
    with controller(params) as c:
        if named is not None:
            drive = c.status(named[1]).to_dict()
            return [drive], {
                "total": 1,
                "attached": int(bool(drive.get("attached"))),
                "problem": int("problem" in drive),
            }
        report = c.audit(datacenter=params["datacenter"], folder=(params["folder"] or "").strip("/") or None)
    drives = [finding.to_dict() for finding in report.findings]
    states: dict[str, int] = {}
    for finding in report.findings:
        states[finding.state] = states.get(finding.state, 0) + 1
    summary = {"vms": report.vms, "datastores": report.datastores, "attention": len(report.needs_attention),
               "states": states, "notes": list(report.notes)}  # fmt: skip
    return drives, summary


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=[("name", "uuid", "moid")]
    )
    require_package(module)
    vm_option = next((k for k in ("name", "uuid", "moid") if module.params[k]), "name")
    try:
        drives, summary = read(module.params)
    except Exception as e:  # one line for the admin, never a traceback
        fail(module, e, vm_option=vm_option)
    module.exit_json(changed=False, drives=drives, summary=summary)


if __name__ == "__main__":
    main()

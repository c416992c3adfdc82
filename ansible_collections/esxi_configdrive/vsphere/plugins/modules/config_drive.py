#!/usr/bin/python
"""The state of a VM's config drive (or of many VMs' drives): the esxi-configdrive package's operations."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_drive
short_description: Attach, update, detach or remove a VM's config drive on vSphere
version_added: 0.1.0
description:
  - Manages the config drive of a vSphere VM, an ISO 9660 image labelled C(config-2) with the CloudStack and
    OpenStack trees that cloud-init, cloudbase-init and CloudStack's guest scripts read at boot (metadata, user
    data, SSH keys, password). It is the VM's B(second) CD-ROM; the VM's own CD-ROM is never touched.
  - O(state=present) attaches the drive, or makes the attached drive hold this content. With O(vmdata) or
    O(vmdata_file) the drive holds exactly that content; with only field options (O(userdata), O(vm_password),
    O(ssh_keys), O(local_hostname), O(label)) those fields of the current drive change and the rest stays.
    A re-run with the same content changes nothing.
  - O(state=detached) is for a VM being stopped (the drive is disconnected, its ISO deleted);
    O(state=absent) for a VM being expunged (the CD-ROM, its ISO and folder go).
  - O(vms) runs the same state over many VMs in one task, on one vSphere session, O(concurrency) at a time;
    a VM that fails gets its own error and the others go on.
  - Every operation is the C(esxi-configdrive) package's, as its command line runs it (C(attach), C(update),
    C(reset-password), C(detach), C(remove)); see its docs/usage.md and docs/operations.md.
author:
  - esxi-configdrive developers (!UNKNOWN)
options:
  state:
    description:
      - V(present) the drive is attached and holds the content given.
      - V(detached) the VM is stopped; disconnect the drive (remove it when the VM is off), then delete its ISO.
      - V(absent) the VM is expunged; remove the CD-ROM, then the ISO and its folder.
    type: str
    choices: [present, detached, absent]
    default: present
  name:
    description:
      - The VM's name, or its inventory path (C(DC0/vm/web/web-1)).
      - Exactly one of O(name), O(uuid), O(moid) or O(vms) is required.
      - A name that two VMs share is refused; give O(folder), O(uuid) or O(moid) then.
    type: str
  folder:
    description:
      - The VM folder that holds the VM named O(name), as an inventory path (C(/DC0/vm/web)), or relative to
        O(datacenter)'s VM folder (C(web)).
    type: str
  datacenter:
    description:
      - The datacenter that O(folder) and inventory paths in O(name) are relative to.
    type: str
  vms:
    description:
      - Many VMs in one task instead of one (exclusive with O(name), O(uuid), O(moid) and the content options).
      - Each entry is one line of the package's batch format (C(esxi-configdrive attach --batch), docs/usage.md).
        With O(state=present), an entry with C(vmdata) or C(vmdata_file) attaches (or makes the drive hold that
        content); an entry with only fields (C(userdata), C(password), C(public_keys), C(hostname)) changes those
        on the current drive. With O(state=detached) or O(state=absent), an entry is just C(vm).
      - The task fails when any VM failed, after all the others were done; RV(results) tells which.
    type: list
    elements: dict
    suboptions:
      vm:
        description: The VM's name, inventory path, instance or BIOS UUID, or managed object id.
        type: str
        required: true
      vmdata:
        description: The VM data, as in O(vmdata).
        type: dict
        suboptions:
          metadata:
            description: Metadata, as in O(vmdata.metadata).
            type: dict
          userdata:
            description: User data text.
            type: str
          userdata_base64:
            description: User data, base64-encoded.
            type: str
          password:
            description: The guest password.
            type: str
          vendor_data:
            description: Vendor data.
            type: dict
          network_data:
            description: Network data.
            type: dict
          network:
            description: Static addressing, as in O(vmdata.network).
            type: dict
          openstack_metadata:
            description: Extra C(meta_data.json) keys.
            type: dict
      vmdata_file:
        description: A VM data file on the host that runs the module, as in O(vmdata_file).
        type: path
      userdata:
        description: New user data text for the current drive.
        type: str
      userdata_base64:
        description: New user data, base64-encoded.
        type: str
      password:
        description: A new guest password for the current drive.
        type: str
      public_keys:
        description: New SSH public keys (replacing the drive's).
        type: list
        elements: str
      hostname:
        description: A new guest host name.
        type: str
      network:
        description: Static addressing, as in O(network) (with C(vmdata), it replaces that content's network data).
        type: dict
      datastore:
        description: The datastore for this VM's ISO (attach only); overrides O(datastore).
        type: str
      controller:
        description: C(auto), C(ide) or C(sata) for this VM (attach only); overrides O(controller).
        type: str
      network_data:
        description: C(auto), C(empty) or C(none) for this VM, as in O(network_data) (C(none) with fields only).
        type: str
      new_instance_id:
        description: Give this VM's drive the VM's own instance UUID as its id, as in O(new_instance_id).
        type: bool
      transport:
        description: C(configdrive), C(nocloud) or C(guestinfo) for this VM, as in O(transport); overrides O(transport).
        type: str
      guestinfo_password:
        description: With C(guestinfo), send this VM's password too, as in O(guestinfo_password).
        type: bool
  concurrency:
    description:
      - With O(vms), how many VMs are worked on at a time (1 to 64).
    type: int
    default: 4
  vmdata:
    description:
      - The drive's whole content, in the VM data file's format (the package's docs/format.md).
      - Exclusive with O(vmdata_file). The CloudStack triple-list form is accepted in O(vmdata_file) only.
    type: dict
    suboptions:
      metadata:
        description:
          - CloudStack's metadata keys, each a string (C(vm-id), which defaults to the VM's instance UUID;
            C(instance-id), C(local-hostname), C(availability-zone) …); C(public-keys) is a list of SSH public
            keys.
          - Any other key becomes C(cloudstack/metadata/<key>.txt).
        type: dict
      userdata:
        description: User data, text (C(#cloud-config) …).
        type: str
      userdata_base64:
        description: User data, base64-encoded (for binary user data); exclusive with O(vmdata.userdata).
        type: str
      password:
        description:
          - The guest password; it is never logged or returned. O(vm_password) overrides it.
        type: str
      vendor_data:
        description: The C(vendor_data.json) object.
        type: dict
      network_data:
        description: The C(network_data.json) object, in nova's form (C(links), C(networks), C(services)).
        type: dict
      network:
        description:
          - Static addressing in plain words, turned into C(network_data.json) (the package's docs/format.md,
            "The network section"); exclusive with O(vmdata.network_data).
          - C(interfaces) (in the VM's NIC order, each taking the MAC of the VM's NIC at its place), each with
            C(id), C(mac), C(mtu), C(addresses) (C(10.1.2.3/24), C(2001:db8::3/64)), C(dhcp4), C(dhcp6),
            C(slaac), C(gateway4), C(gateway6), C(routes) (C(to), C(via)); C(dns) and C(dns_search) for the VM.
        type: dict
      openstack_metadata:
        description: Extra C(meta_data.json) keys (nova's C(meta), C(launch_index) …).
        type: dict
  vmdata_file:
    description:
      - A VM data file (JSON, YAML, or CloudStack's C([directory, file, content]) triple list) on the host that
        runs the module. Exclusive with O(vmdata).
    type: path
  userdata:
    description:
      - User data text; replaces the content's (or the current drive's) user data. An empty string removes it.
    type: str
  vm_password:
    description:
      - The guest password; replaces the content's (or the current drive's). Never logged or returned.
    type: str
  ssh_keys:
    description:
      - SSH public keys; replace the content's (or the current drive's) keys.
    type: list
    elements: str
  local_hostname:
    description:
      - The guest's host name (metadata C(local-hostname)).
    type: str
  network:
    description:
      - Static addressing (the C(network) section of the package's docs/format.md); replaces the content's (or the
        current drive's) network data.
      - C(interfaces) is a list in the VM's NIC order; each interface gets the MAC of the VM's NIC at its place (a
        C(mac) given must be that NIC's). Keys of an interface are C(id), C(mac), C(mtu), C(addresses),
        C(dhcp4), C(dhcp6), C(slaac), C(gateway4), C(gateway6) and C(routes) (each with C(to) and C(via));
        C(dns) and C(dns_search) are lists for the whole VM.
      - Bad addresses, masks, gateways outside the interface's subnets, or more interfaces than the VM has NICs
        make the task fail naming the field, and nothing is changed.
    type: dict
  new_instance_id:
    description:
      - Make the drive's id (C(metadata.vm-id), cloud-init's instance id) the VM's own instance UUID, whatever the
        content says. A cloned VM then gets an id of its own, so cloud-init provisions it again; re-runs change
        nothing (the instance UUID stays).
      - Without it, a content without C(vm-id) also gets the VM's instance UUID when attached; an update keeps the
        drive's id.
    type: bool
    default: false
  label:
    description:
      - The volume label. When not set, C(config-2) for O(vmdata) and O(vmdata_file), else the current drive's.
    type: str
  network_data:
    description:
      - V(auto) writes C(network_data.json) links for the VM's network adapters with their real MAC addresses
        (what cloud-init matches NICs by) and DHCP on each; links given in O(vmdata.network_data) keep their
        settings. Not with O(network) or O(vmdata.network).
      - V(empty) writes CloudStack's C({}) (cloud-init then configures no network at all); V(none) writes no
        C(network_data.json) (cloud-init falls back to DHCP on the first NIC). Neither with network data given.
      - When not set, the network data is the content's (O(vmdata)), or the current drive's.
    type: str
    choices: [auto, empty, none]
  transport:
    description:
      - How the data reaches the guest. V(configdrive) is a config-2 ISO (cloud-init's ConfigDrive,
        cloudbase-init); V(nocloud) is a NoCloud seed ISO labelled C(cidata) (cloud-init's NoCloud, which it reads
        before ConfigDrive). V(guestinfo) writes VMware guestinfo keys into the VM's extraConfig in one
        reconfigure (cloud-init's VMware datasource; no ISO, no reboot); a password is refused over it unless
        O(guestinfo_password) is set.
      - When not set, the current drive's (V(configdrive) for a VM without one), so re-running a task without it
        changes nothing. Another transport than the current drive's moves the VM to it in one swap (never two
        drives attached).
    type: str
    choices: [configdrive, nocloud, guestinfo]
  guestinfo_password:
    description:
      - With O(transport=guestinfo), send the password too (vendor data that cloud-init blanks once read, by the
        metadata's C(redact) list). Until then anyone who may read the VM's configuration in vCenter, and any
        process in the guest, can read it. Without this option a password over guestinfo is refused.
    type: bool
    default: false
  datastore:
    description:
      - The datastore for the ISO when attaching; when not set, the datastore of the VM's configuration file.
      - Naming another datastore than the attached drive's moves the drive there.
    type: str
  controller:
    description:
      - Where a new CD-ROM goes. When not set, C(auto) (IDE when the VM is off and a slot is free, else SATA;
        IDE cannot be hot-added to a running VM).
    type: str
    choices: [auto, ide, sata]
  force_eject:
    description:
      - When the guest holds the CD-ROM door locked (the drive is mounted), answer vSphere's question with yes (the
        guest loses the mounted drive). Otherwise the question is answered no, the task fails and the VM
        keeps its old drive.
    type: bool
    default: false
  avoid_lock_question:
    description:
      - Also set the VM options that make ESXi not ask the locked-door question (C(cdrom.showIsoLockWarning),
        C(msg.autoanswer); effective from the VM's next power-on).
    type: bool
    default: false
  admin_pass:
    description:
      - Whether the password also goes into C(meta_data.json)'s C(admin_pass), which cloudbase-init (Windows)
        reads. V(auto) does so for Windows guests only (cloud-init copies C(meta_data.json) into a
        world-readable file).
    type: str
    choices: [auto, 'yes', 'no']
    default: auto
  reset_password:
    description:
      - Put a new random password on the current drive (applied by the guest at its next boot). Changes the drive
        every time it runs. Exclusive with the content options.
    type: bool
    default: false
  password_length:
    description:
      - The length of the O(reset_password) password (12 to 128).
    type: int
    default: 20
  return_password:
    description:
      - Return the O(reset_password) password as RV(password). It is then in the task's result; set C(no_log)
        on the task.
    type: bool
    default: false
  task_timeout:
    description:
      - How long to wait for one vSphere task, in seconds.
    type: float
    default: 600
extends_documentation_fragment:
  - esxi_configdrive.vsphere.connection
  - esxi_configdrive.vsphere.vm
attributes:
  check_mode:
    description: What would change is reported (RV(actions)), nothing is changed.
    support: full
  diff_mode:
    description:
      - The drive's content before and after (metadata, SSH keys, user data, vendor and network data, label,
        the ISO); the password masked, also where the content repeats it.
      - In check mode the content the task would write; the attach itself may still complete it (a vm-id left
        out becomes the VM's instance UUID, its NICs' MACs fill network links).
      - For one VM; not with O(vms).
    support: partial
notes:
  - Run it where the C(esxi-configdrive) package is installed, normally with C(delegate_to=localhost).
  - A VM whose CD-ROMs another tool also manages (Terraform's vSphere provider, vmware.vmware.vm's C(cdroms))
    may lose this drive when that tool runs; see the package's docs/ansible.md.
seealso:
  - module: esxi_configdrive.vsphere.config_drive_info
"""

EXAMPLES = r"""
- name: Give web-1 its config drive
  esxi_configdrive.vsphere.config_drive:
    hostname: vcenter.example.com
    username: automation@vsphere.local
    password: "{{ vcenter_password }}"
    name: web-1
    vmdata:
      metadata:
        vm-id: 7c1e4a52-9a3f-4c55-8d2e-0d6b9d1f3a10
        instance-id: i-2-24-VM
        local-hostname: web-1
        public-keys:
          - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM1ER+mSr0AvK9kTOntF1DF7YNp01At3V/ODrC4l0i8M alice@example
      userdata: |
        #cloud-config
        package_update: true
    vm_password: "{{ web1_password }}"
  delegate_to: localhost

- name: New user data on the drive the VM has (the rest of its content stays)
  esxi_configdrive.vsphere.config_drive:
    name: web-1
    userdata: "{{ lookup('ansible.builtin.file', 'user-data.yaml') }}"
  delegate_to: localhost

- name: A static address on the VM's first NIC (its MAC comes from the VM); the vm-id defaults to the VM's instance UUID
  esxi_configdrive.vsphere.config_drive:
    name: db-1
    vmdata:
      metadata:
        local-hostname: db-1
    network:
      interfaces:
        - addresses: [10.1.2.3/24]
          gateway4: 10.1.2.1
      dns: [10.1.0.2]
      dns_search: [example.com]
  delegate_to: localhost

- name: A clone gets its own instance id (cloud-init provisions it again) and its own address
  esxi_configdrive.vsphere.config_drive:
    name: web-1-clone
    vmdata: "{{ web1_vmdata }}"
    new_instance_id: true
    network:
      interfaces:
        - addresses: [10.1.2.4/24]
          gateway4: 10.1.2.1
  delegate_to: localhost

- name: A new random password, applied at the next boot, returned once
  esxi_configdrive.vsphere.config_drive:
    moid: vm-42
    reset_password: true
    return_password: true
  register: reset
  no_log: true
  delegate_to: localhost

# group_vars/web.yml: config_drive_entry: {vm: "{{ inventory_hostname }}", vmdata: "{{ config_drive }}"}
- name: Every VM of the play in one task, one vSphere session, 8 at a time
  esxi_configdrive.vsphere.config_drive:
    concurrency: 8
    vms: "{{ ansible_play_hosts | map('extract', hostvars, 'config_drive_entry') | list }}"
  run_once: true
  delegate_to: localhost

- name: VM stopped
  esxi_configdrive.vsphere.config_drive:
    uuid: 5003e5c0-8d6f-3b22-9e0f-5c1a2b3c4d5e
    state: detached
  delegate_to: localhost

- name: VM expunged
  esxi_configdrive.vsphere.config_drive:
    name: web-1
    folder: /DC0/vm/web
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
vm:
  description: The VM's name.
  returned: when one VM is named
  type: str
  sample: web-1
actions:
  description: What was done, or in check mode what would be done, step by step.
  returned: when one VM is named
  type: list
  elements: str
  sample:
    - create folder [LocalDS_0] ConfigDrive/web-1 if missing
    - upload the config drive to [LocalDS_0] ConfigDrive/web-1/configdrive.iso
    - add a CD-ROM on IDE 0:1 backed by [LocalDS_0] ConfigDrive/web-1/configdrive.iso, connected at power-on
iso:
  description: The datastore path of the drive's ISO (to be) attached.
  returned: when the VM has, or is to have, a drive
  type: str
  sample: "[LocalDS_0] ConfigDrive/web-1/configdrive.iso"
sha256:
  description: The SHA-256 of the ISO written.
  returned: when an ISO was written
  type: str
device:
  description: The drive's CD-ROM after the task (in check mode, as it is now).
  returned: when one VM is named and it has the drive's CD-ROM
  type: dict
  sample:
    key: 3002
    controller: ide
    bus: 0
    unit: 1
    label: CD/DVD drive 2
    connected: false
    start_connected: true
    iso: "[LocalDS_0] ConfigDrive/web-1/configdrive.iso"
dry_run:
  description: True in check mode.
  returned: in check mode
  type: bool
password:
  description: The new password of O(reset_password).
  returned: with O(reset_password) and O(return_password), when not in check mode
  type: str
results:
  description:
    - With O(vms), one result per entry, in the order of O(vms) (C(index) is the entry's position), as the package's
      batch mode reports them. A failed entry has C(error) (one line) and C(exit_status) (1 vSphere failure,
      2 bad input).
  returned: with O(vms)
  type: list
  elements: dict
  sample:
    - index: 0
      vm: web-1
      changed: true
      actions: ["uploaded 55296 bytes to [LocalDS_0] ConfigDrive/web-1/configdrive.iso"]
      iso: "[LocalDS_0] ConfigDrive/web-1/configdrive.iso"
    - index: 1
      vm: web-2
      changed: false
      error: "no VM named 'web-2'"
      exit_status: 2
summary:
  description: With O(vms), the counts of VMs done, changed, failed on vSphere and refused for bad input.
  returned: with O(vms)
  type: dict
  sample: {total: 2, changed: 1, failed: 0, bad_input: 1}
field:
  description: The option (or the field of O(vmdata)) that a bad input is about.
  returned: on failure for bad input
  type: str
  sample: vmdata.metadata.vm-id
exit_status:
  description: The package's exit status for a vSphere or runtime failure (1), or a VM, datastore or host that does
    not exist (2).
  returned: on failure
  type: int
"""

import contextlib  # noqa: E402 - ansible-test wants the documentation first
from collections.abc import Callable  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils import fanout  # noqa: E402
from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils.common import (  # noqa: E402
    connection_spec,
    controller,
    fail,
    one_line,
    require_package,
    vm_identity,
    vm_spec,
)
from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils.content import (  # noqa: E402
    CONTENT_OPTIONS,
    content_change,
    content_spec,
    given,
    layout_options,
    load,
    overrides,
)
from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils.diff import (  # noqa: E402
    NO_DRIVE,
    diff,
    planned_update,
    view,
)

with contextlib.suppress(ImportError):  # reported by require_package
    from esxi_configdrive import ValidationError
    from esxi_configdrive.batch import batch_defaults
    from esxi_configdrive.dispatch import Request, has_change, parse
    from esxi_configdrive.fields import check_concurrency, check_password_length
    from esxi_configdrive.vmdata import ContentChange

# (controller, vm, dry_run) -> the operation's Result; (content before, result) -> the view check mode plans
Operation = Callable[[Any, str, bool], Any]
Planned = Callable[[Any, dict], dict]
ATTACH_ONLY = ("datastore", "controller")


def argument_spec() -> dict[str, Any]:
    spec = {**connection_spec(), **vm_spec(), **content_spec()}
    spec.update(
        state={"type": "str", "choices": ["present", "detached", "absent"], "default": "present"},
        vms={"type": "list", "elements": "dict", "options": fanout.entry_spec()},
        concurrency={"type": "int", "default": 4},
        network_data={"type": "str", "choices": ["auto", "empty", "none"]},
        transport={"type": "str", "choices": ["configdrive", "nocloud", "guestinfo"]},
        guestinfo_password={"type": "bool", "default": False, "no_log": False},
        new_instance_id={"type": "bool", "default": False},
        datastore={"type": "str"},
        controller={"type": "str", "choices": ["auto", "ide", "sata"]},
        force_eject={"type": "bool", "default": False},
        avoid_lock_question={"type": "bool", "default": False},
        admin_pass={"type": "str", "choices": ["auto", "yes", "no"], "default": "auto", "no_log": False},
        reset_password={"type": "bool", "default": False, "no_log": False},
        password_length={"type": "int", "default": 20, "no_log": False},
        return_password={"type": "bool", "default": False, "no_log": False},
        task_timeout={"type": "float", "default": 600.0},
    )
    return spec


def controller_options(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "force_eject": params["force_eject"],
        "avoid_lock_question": params["avoid_lock_question"],
        "admin_pass": params["admin_pass"],
        "task_timeout": params["task_timeout"],
    }


# ---- one VM ---------------------------------------------------------------------------------------------------


def plan(params: dict[str, Any]) -> tuple[Operation, Planned]:
    """The operation the options ask for, checked before anything is sent to vSphere, and what check mode
    reports the drive would hold afterwards."""
    state = params["state"]
    content = given(params, CONTENT_OPTIONS)
    if state != "present":
        extra = content + given(params, ("network_data", "transport", *ATTACH_ONLY))
        extra += [key for key in ("reset_password", "new_instance_id", "guestinfo_password") if params[key]]
        if extra:
            raise ValidationError(extra[0], f"does not apply with state={state}")
        if state == "detached":
            return (lambda c, vm, dry: c.detach(vm, dry_run=dry)), lambda before, result: dict(NO_DRIVE)
        return (lambda c, vm, dry: c.remove(vm, dry_run=dry)), lambda before, result: dict(NO_DRIVE)
    if params["reset_password"]:
        return _reset_password(params, content)
    data = load(params)
    # the package's own request: the same checks and network-data choices as the CLI and batch lines
    request = Request(
        vm=None,
        data=data,
        datastore=params["datastore"],
        controller=params["controller"] or "auto",
        network_data=params["network_data"],
        new_instance_id=params["new_instance_id"],
        transport=params["transport"],
        guestinfo_password=params["guestinfo_password"],
    )
    if data is not None:
        return (
            _dispatched("attach", request),
            lambda before, result: view(data, result.get("iso")),
        )
    change = content_change(params)
    request = replace(request, overrides=overrides(params), options=layout_options(params))
    if not has_change(request):
        raise ValidationError(
            "vmdata",
            "state=present needs vmdata or vmdata_file (the whole content), a field to change (userdata, "
            "vm_password, ssh_keys, local_hostname, network, label, network_data, new_instance_id, transport), or "
            "reset_password",
        )
    attach_only = given(params, ATTACH_ONLY)
    if attach_only:
        raise ValidationError(attach_only[0], "applies when attaching: give vmdata or vmdata_file")
    return (
        _dispatched("update", request),
        lambda before, result: planned_update(before, change, result.get("iso")),
    )


def _dispatched(command: str, request: Any) -> Operation:
    """The operation: ``request`` parsed (checked) now, before the session; run for the VM, dry in check mode."""
    call = parse(command, request)
    return lambda c, vm, dry: c.run(replace(call, vm=vm, dry_run=dry))


def _reset_password(params: dict[str, Any], content: list[str]) -> tuple[Operation, Planned]:
    extra = content + given(params, ("network_data", "transport", *ATTACH_ONLY))
    if params["new_instance_id"]:
        extra.append("new_instance_id")
    if extra:
        raise ValidationError(extra[0], "does not apply with reset_password")
    length = params["password_length"]
    check_password_length(length, "password_length")
    return (
        lambda c, vm, dry: c.reset_password(vm, length=length, dry_run=dry),
        lambda before, result: planned_update(before, ContentChange(password="new"), result.get("iso")),
    )


def run_one(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    vm = vm_identity(params)[1]
    operation, planned = plan(params)
    check = module.check_mode
    with controller(params, **controller_options(params)) as c:
        before = c.status(vm).to_dict() if module._diff or check else None
        content_before = c.read(vm) if module._diff else None
        result = operation(c, vm, check).to_dict()
        now = before if check else c.status(vm).to_dict()
        content_after = c.read(vm) if module._diff and result["changed"] and not check else content_before
    for warning in result.pop("warnings", []):
        module.warn(warning)
    out = {k: v for k, v in result.items() if k != "password" or params["return_password"]}
    if now.get("device"):
        out["device"] = now["device"]
    if module._diff:
        before_view = view(content_before, before.get("iso"))
        if not result["changed"]:
            after_view = before_view
        elif check:
            after_view = planned(content_before, result)
        else:
            after_view = view(content_after, now.get("iso"))
        out["diff"] = diff(result["vm"], before_view, after_view)
    return out


# ---- many VMs -------------------------------------------------------------------------------------------------


def run_fleet(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    extra = given(params, CONTENT_OPTIONS)
    if params["reset_password"]:
        extra.append("reset_password")
    if extra:
        raise ValidationError(extra[0], "does not apply with vms: put the content in each entry")
    check_concurrency(params["concurrency"])
    defaults = batch_defaults(
        dry_run=module.check_mode,
        new_instance_id=params["new_instance_id"],
        datastore=params["datastore"],
        controller=params["controller"],
        network_data=params["network_data"],
        transport=params["transport"],
        guestinfo_password=params["guestinfo_password"],
    )
    with controller(params, **controller_options(params)) as c:
        results, counts = fanout.run(
            c, params["state"], params["vms"], concurrency=params["concurrency"], defaults=defaults
        )
    out = {"changed": counts["changed"] > 0, "results": results, "summary": counts}
    failed = [r for r in results if "error" in r]
    if failed:
        shown = "; ".join(f"vms[{r['index']}] {r['vm']}: {r['error']}" for r in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        module.fail_json(msg=one_line(f"{len(failed)} of {counts['total']} VMs failed: {shown}{more}"), **out)
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("name", "uuid", "moid", "vms"), ("vmdata", "vmdata_file")],
        required_one_of=[("name", "uuid", "moid", "vms")],
    )
    require_package(module)
    vm_option = next((k for k in ("name", "uuid", "moid") if module.params[k]), "vms")
    try:
        result = run_fleet(module) if module.params["vms"] is not None else run_one(module)
    except Exception as e:  # every failure is one line for the admin, never a traceback
        fail(module, e, vm_option=vm_option)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

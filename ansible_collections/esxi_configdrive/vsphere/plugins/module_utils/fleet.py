"""The fleet read of ``config_drive_info``: the drive of every VM in the inventory, a datacenter or a folder.

Until the package has its fleet read (the ``audit`` command, a few collector calls for any number of VMs), this
lists the VMs in one collector call and runs the package's ``status`` for each, ``concurrency`` at a time on the
one session.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

with contextlib.suppress(ImportError):  # reported by common.require_package
    from pyVmomi import vim, vmodl

    from esxi_configdrive import ValidationError
    from esxi_configdrive.errors import NotFound, describe_failure
    from esxi_configdrive.vsphere.inventory import retrieve, vm_name_index

from ansible_collections.esxi_configdrive.vsphere.plugins.module_utils.common import one_line


def container_path(datacenter: str | None, folder: str | None) -> str | None:
    """The inventory path to read under: the folder (relative to the datacenter's VM folder unless it starts
    with the datacenter), else the datacenter; None for the whole inventory."""
    folder = (folder or "").strip("/")
    if folder:
        if datacenter and not folder.startswith(f"{datacenter}/"):
            return f"{datacenter}/vm/{folder}"
        return folder
    return datacenter or None


def vms_under(session: Any, path: str | None) -> list[Any]:
    """The VMs below ``path`` (an inventory path), or in the whole inventory."""
    if path is None:
        return [vm for refs in vm_name_index(session).values() for vm in refs]
    content = session.content
    root = session.call(lambda: content.searchIndex.FindByInventoryPath(path), "FindByInventoryPath")
    if not isinstance(root, (vim.Datacenter, vim.Folder)):
        raise NotFound(f"no datacenter or VM folder at inventory path {path}")
    view = session.call(
        lambda: content.viewManager.CreateContainerView(root, [vim.VirtualMachine], True), "CreateContainerView"
    )
    try:
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[
                pc.ObjectSpec(
                    obj=view, skip=True, selectSet=[pc.TraversalSpec(type=vim.view.ContainerView, path="view")]
                )
            ],
            propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])],
        )
        return [row[0] for row in retrieve(session, spec)]
    finally:
        session.call(view.DestroyView, "DestroyView")


def read_all(controller: Any, vms: list[Any], concurrency: int) -> list[dict[str, Any]]:
    """``status`` of every VM, sorted by name; a VM that cannot be read gets its ``error`` and the rest go on."""

    def one(vm: Any) -> dict[str, Any]:
        try:
            return controller.status(vm).to_dict()
        except Exception as e:  # one VM's failure is its own entry
            message, status = describe_failure(e)
            return {"vm": vm._moId, "moid": vm._moId, "error": one_line(message), "exit_status": status}

    if not 1 <= concurrency <= 64:
        raise ValidationError("concurrency", "must be between 1 and 64")
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="info") as pool:
        drives = list(pool.map(one, vms))
    for drive, vm in zip(drives, vms):
        drive.setdefault("moid", vm._moId)
    return sorted(drives, key=lambda d: (d["vm"], d["moid"]))

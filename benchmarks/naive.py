"""The baseline for the round-trip benchmark: the same jobs written the way most pyVmomi code is.

Attribute access for every property (pyVmomi sends a request per access), a ContainerView to find the VM by
name, pyVim's WaitForTask (a property filter per task). Functionally the same drive handling as the tool, minus
its safety checks; used only to count requests. Not part of the package.
"""

from __future__ import annotations

import contextlib
from typing import Any

import requests
from pyVim.task import WaitForTask
from pyVmomi import vim

from esxi_configdrive.iso import build_iso, read_iso


def find_vm(si: Any, name: str) -> vim.VirtualMachine:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        for vm in view.view:
            if vm.name == name:
                return vm
    finally:
        view.Destroy()
    raise LookupError(name)


def datacenter_of(vm: vim.VirtualMachine) -> vim.Datacenter:
    obj = vm.parent
    while not isinstance(obj, vim.Datacenter):
        obj = obj.parent
    return obj


def _url(base: str, dc: vim.Datacenter, ds: str, path: str) -> str:
    return f"{base}/folder/{path}?dcPath={dc.name}&dsName={ds}"


def _http(si: Any, verify: Any) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = verify
    cookie = si._stub.cookie.split(";")[0]
    s.headers["Cookie"] = cookie
    return s


def _our_cdrom(vm: vim.VirtualMachine) -> Any:
    for d in vm.config.hardware.device:
        if isinstance(d, vim.vm.device.VirtualCdrom) and "ConfigDrive/" in (getattr(d.backing, "fileName", "") or ""):
            return d
    return None


def attach(si: Any, base: str, verify: Any, name: str, data: Any) -> bool:
    vm = find_vm(si, name)
    if _our_cdrom(vm) is not None:
        return False
    dc = datacenter_of(vm)
    ds = vm.datastore[0].name
    folder = f"ConfigDrive/{vm.name}"
    with contextlib.suppress(vim.fault.FileAlreadyExists):
        si.content.fileManager.MakeDirectory(f"[{ds}] {folder}", dc, True)
    iso = build_iso(data)
    _http(si, verify).put(_url(base, dc, ds, f"{folder}/configdrive.iso"), data=iso).raise_for_status()
    on = vm.runtime.powerState == "poweredOn"
    sata = next((d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualSATAController)), None)
    changes = []
    ckey = sata.key if sata else -50
    if sata is None:
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=vim.vm.device.VirtualAHCIController(
            key=-50, busNumber=0)))  # fmt: skip
    used = {d.unitNumber for d in vm.config.hardware.device if d.controllerKey == ckey}
    unit = next(u for u in range(30) if u not in used)
    cd = vim.vm.device.VirtualCdrom(
        key=-51, controllerKey=ckey, unitNumber=unit,
        backing=vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=f"[{ds}] {folder}/configdrive.iso"),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, connected=on),
    )  # fmt: skip
    changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=cd))
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=changes)))
    return True


def status(si: Any, base: str, verify: Any, name: str) -> dict:
    vm = find_vm(si, name)
    cd = _our_cdrom(vm)
    path = cd.backing.fileName
    ds, rel = path[1:].split("] ", 1)
    dc = datacenter_of(vm)
    body = _http(si, verify).get(_url(base, dc, ds, rel)).content
    return {"connected": cd.connectable.connected, "hostname": read_iso(body).hostname}


def update(si: Any, base: str, verify: Any, name: str, password: str) -> bool:
    vm = find_vm(si, name)
    cd = _our_cdrom(vm)
    old = cd.backing.fileName
    ds, rel = old[1:].split("] ", 1)
    dc = datacenter_of(vm)
    http = _http(si, verify)
    data = read_iso(http.get(_url(base, dc, ds, rel)).content)
    data.password = password
    new_rel = f"ConfigDrive/{vm.name}/configdrive-{abs(hash(password)) % 10**8}.iso"
    http.put(_url(base, dc, ds, new_rel), data=build_iso(data)).raise_for_status()
    cd.backing = vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=f"[{ds}] {new_rel}")
    spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="edit", device=cd)])
    WaitForTask(vm.ReconfigVM_Task(spec))
    _delete(si, old, dc)
    return True


def _delete(si: Any, path: str, dc: Any) -> None:
    task = si.content.fileManager.DeleteDatastoreFile_Task(path, dc)
    # vcsim 0.24 serves FileManager tasks' info in a form pyVmomi refuses (REFERENCE §3); the file is gone anyway
    with contextlib.suppress(Exception):
        WaitForTask(task)


def detach(si: Any, base: str, verify: Any, name: str) -> bool:
    vm = find_vm(si, name)
    cd = _our_cdrom(vm)
    if cd is None:
        return False
    path = cd.backing.fileName
    dc = datacenter_of(vm)
    if vm.runtime.powerState == "poweredOn":
        cd.backing = vim.vm.device.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False)
        cd.connectable.connected = False
        cd.connectable.startConnected = False
        op = "edit"
    else:
        op = "remove"
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        vim.vm.device.VirtualDeviceSpec(operation=op, device=cd)])))  # fmt: skip
    _delete(si, path, dc)
    return True

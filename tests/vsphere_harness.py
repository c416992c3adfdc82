"""Python side of the vSphere test bed: start the vcsim harness (tests/vcsim), connect pyvmomi to it, and
small inventory helpers for tests (find, create and power VMs, datastore uploads, task waiting).

The helpers deliberately use the PropertyCollector and collect only ``info.state``/``info.error``/
``info.result`` of tasks: pyvmomi 9 cannot deserialize vcsim's FileManager task ``info.entity``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import requests
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "scripts" / "build-vcsim"
DEFAULT_USERNAME = "administrator@vsphere.local"
DEFAULT_DATACENTER = "DC0"
DEFAULT_DATASTORE = "LocalDS_0"


class HarnessUnavailable(RuntimeError):
    """The harness binary cannot be built (no Go toolchain or govmomi) or does not start."""


class TaskFailed(RuntimeError):
    """A vSphere task ended in state ``error``; ``fault`` is the vmodl fault (pyvmomi's ``info.error``)."""

    def __init__(self, fault: Any, message: str) -> None:
        super().__init__(message)
        self.fault = fault
        self.message = message


class Target(Protocol):
    """What ``connect`` needs: a live ``Vcsim`` or ``cassette.ReplayTarget``."""

    url: str
    username: str
    password: str
    ca_file: str | None


# ---------------------------------------------------------------------------------------------------------
# Building and running the harness


def build_harness(timeout: float = 900) -> Path:
    """Build (or reuse the cached) harness binary with scripts/build-vcsim; return its path."""
    try:
        proc = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessUnavailable(f"scripts/build-vcsim could not run: {exc}") from exc
    if proc.returncode != 0:
        raise HarnessUnavailable(f"scripts/build-vcsim failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    path = Path(proc.stdout.strip().splitlines()[-1])
    if not os.access(path, os.X_OK):
        raise HarnessUnavailable(f"scripts/build-vcsim printed {path}, which is not executable")
    return path


class Vcsim:
    """A running harness process: vCenter simulator on a free loopback port, with fault injection.

    >>> with Vcsim() as sim:
    ...     si = connect(sim)
    """

    def __init__(
        self,
        binary: str | os.PathLike[str] | None = None,
        *,
        vms: int | None = None,
        latency_ms: float | None = None,
        plain_http: bool = False,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.binary = Path(binary) if binary else None
        self.vms = vms
        self.latency_ms = latency_ms
        self.plain_http = plain_http
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.control_url = ""
        self.ca_file: str | None = None
        self.username = ""
        self.password = ""
        self.log_path: Path | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._http = _loopback_session()

    def __repr__(self) -> str:  # never show the password
        return f"Vcsim(url={self.url!r}, pid={self.process.pid if self.process else None})"

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Vcsim:
        if self.process is not None:
            return self
        binary = self.binary or build_harness()
        self._workdir = tempfile.TemporaryDirectory(prefix="vcsim-")
        work = Path(self._workdir.name)
        self.log_path = work / "harness.log"
        # -exit-on-stdin-eof: the harness exits with us even if we are killed without cleanup.
        args = [str(binary), "-listen", "127.0.0.1:0", "-cert-dir", str(work), "-exit-on-stdin-eof"]
        if self.plain_http:
            args.append("-plain-http")
        if self.vms is not None:
            args += ["-vms", str(self.vms)]
        if self.latency_ms:
            args += ["-latency", f"{self.latency_ms}ms"]
        args += list(self.extra_args)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.PIPE, start_new_session=True
            )
        try:
            info = self._read_startup_line()
        except BaseException:
            self.stop()
            raise
        self.url = info["url"]
        self.control_url = info["control_url"]
        self.ca_file = info.get("ca_file") or None
        self.username = info["username"]
        self.password = info["password"]
        self._http.verify = self.ca_file or True
        return self

    def _read_startup_line(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.startup_timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise HarnessUnavailable(
                    f"vcsim harness did not start within {self.startup_timeout}s: {self.log_tail()}"
                )
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise HarnessUnavailable(f"vcsim harness exited ({self.process.wait()}): {self.log_tail()}")
            buf += chunk
        sel.close()
        return json.loads(buf.split(b"\n", 1)[0])

    def log_tail(self, n: int = 2000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe:
                    pipe.close()
        self._http.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Vcsim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """The host name or address (``127.0.0.1``)."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (443 if self.scheme == "https" else 80)

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl_context(self)

    # -- control API ----------------------------------------------------------------------------------

    def _control(self, method: str, route: str, body: Mapping[str, Any] | None = None) -> Any:
        resp = self._http.request(method, f"{self.control_url}/{route}", json=body, timeout=30)
        if resp.status_code != 200:
            raise ValueError(f"control {method} {route}: {resp.status_code} {resp.text.strip()}")
        return resp.json()

    def set_faults(self, faults: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Merge settings into the fault configuration (see docs/testing.md); returns the new one.

        ``set_faults(locked_door={"enabled": True, "vms": ["vm1"]}, latency_ms=30)``. A nested section
        is merged key by key; keys not given keep their value.
        """
        return self._control("POST", "faults", {**(faults or {}), **kwargs})

    def faults(self) -> dict[str, Any]:
        return self._control("GET", "faults")

    def counters(self) -> dict[str, Any]:
        """SOAP calls (total and per method), /folder requests per HTTP method, fault counters and
        pending locked-door questions."""
        return self._control("GET", "counters")

    def reset_faults(self) -> dict[str, Any]:
        """Back to the start-up fault configuration; counters to zero; pending questions fail."""
        return self._control("POST", "reset")

    def set_datastore(self, name: str, **state: Any) -> dict[str, Any]:
        """Change what vSphere reports about a datastore (``access_mode``, ``accessible``, ``maintenance_mode``,
        ``free_space``: docs/testing.md). An inventory change: ``reset_faults`` does not undo it."""
        return self._control("POST", "datastore", {"name": name, **state})

    def expire_sessions(self) -> int:
        """Terminate every session now (as vCenter's idle timeout would); returns how many."""
        return int(self._control("POST", "expire-sessions")["expired"])


# ---------------------------------------------------------------------------------------------------------
# Connecting


def ssl_context(target: Target) -> ssl.SSLContext | None:
    """A verifying context trusting the harness's CA (None for plain HTTP)."""
    if urlsplit(target.url).scheme != "https":
        return None
    if target.ca_file:
        return ssl.create_default_context(cafile=target.ca_file)
    return ssl.create_default_context()


def connect(
    target: Target, *, username: str | None = None, password: str | None = None, **kwargs: Any
) -> vim.ServiceInstance:
    """Log in with pyvmomi (SmartConnect), verifying TLS against the harness's CA file."""
    parts = urlsplit(target.url)
    return SmartConnect(
        protocol=parts.scheme,
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        user=target.username if username is None else username,
        pwd=target.password if password is None else password,
        sslContext=ssl_context(target),
        **kwargs,
    )


def disconnect(si: vim.ServiceInstance) -> None:
    """Log out, ignoring an already dead session."""
    with contextlib.suppress(Exception):  # best effort at teardown
        Disconnect(si)


def session_cookie(si: vim.ServiceInstance) -> str:
    """The ``vmware_soap_session`` value of a connection, for /folder requests."""
    m = re.search(r'vmware_soap_session="?([^";\s]+)', si._stub.cookie or "")
    if not m:
        raise ValueError("the connection has no vmware_soap_session cookie")
    return m.group(1)


# ---------------------------------------------------------------------------------------------------------
# Datastore HTTP access (/folder)


def datastore_url(target: Target, datastore: str, path: str, *, datacenter: str = DEFAULT_DATACENTER) -> str:
    parts = urlsplit(target.url)
    query = urlencode({"dcPath": datacenter, "dsName": datastore})
    return f"{parts.scheme}://{parts.netloc}/folder/{quote(path.lstrip('/'))}?{query}"


def _loopback_session() -> requests.Session:
    s = requests.Session()
    # Without this, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE silently replace Session.verify (requests #3829)
    # and an HTTP(S)_PROXY variable would route loopback traffic through a proxy.
    s.trust_env = False
    return s


def http_session(target: Target, si: vim.ServiceInstance | None = None) -> requests.Session:
    """A requests session trusting the harness CA, carrying the connection's session cookie."""
    s = _loopback_session()
    s.verify = target.ca_file or True
    if si is not None:
        s.headers["Cookie"] = f'vmware_soap_session="{session_cookie(si)}"'
    return s


def make_directory(si: vim.ServiceInstance, datastore_path: str, *, datacenter: str = DEFAULT_DATACENTER) -> None:
    """``FileManager.MakeDirectory(createParentDirectories=True)``; an existing folder is fine."""
    dc = find_datacenter(si, datacenter)
    with contextlib.suppress(vim.fault.FileAlreadyExists):
        si.content.fileManager.MakeDirectory(name=datastore_path, datacenter=dc, createParentDirectories=True)


def upload(
    target: Target,
    si: vim.ServiceInstance,
    datastore: str,
    path: str,
    data: bytes,
    *,
    datacenter: str = DEFAULT_DATACENTER,
) -> requests.Response:
    """PUT ``data`` to ``[datastore] path``; returns the response (status not checked)."""
    with http_session(target, si) as s:
        return s.put(datastore_url(target, datastore, path, datacenter=datacenter), data=data, timeout=60)


def download(
    target: Target, si: vim.ServiceInstance, datastore: str, path: str, *, datacenter: str = DEFAULT_DATACENTER
) -> requests.Response:
    with http_session(target, si) as s:
        return s.get(datastore_url(target, datastore, path, datacenter=datacenter), timeout=60)


# ---------------------------------------------------------------------------------------------------------
# Inventory


def retrieve(
    si: vim.ServiceInstance, obj_type: type, props: list[str], *, root: vim.ManagedEntity | None = None
) -> list[dict[str, Any]]:
    """One RetrievePropertiesEx over a ContainerView: ``[{"obj": moref, prop: value, ...}, ...]``."""
    content = si.content
    view = content.viewManager.CreateContainerView(root or content.rootFolder, [obj_type], True)
    try:
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[
                vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        vmodl.query.PropertyCollector.TraversalSpec(
                            name="view", path="view", skip=False, type=vim.view.ContainerView
                        )
                    ],
                )
            ],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=obj_type, pathSet=props)],
        )
        out: list[dict[str, Any]] = []
        result = content.propertyCollector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        while result is not None:
            for oc in result.objects:
                row: dict[str, Any] = {"obj": oc.obj}
                row.update({p.name: p.val for p in oc.propSet})
                out.append(row)
            if not result.token:
                break
            result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return out
    finally:
        view.DestroyView()


def _find(si: vim.ServiceInstance, obj_type: type, name: str) -> Any:
    for row in retrieve(si, obj_type, ["name"]):
        if row.get("name") == name:
            return row["obj"]
    raise LookupError(f"no {obj_type.__name__} named {name!r}")


def find_vm(si: vim.ServiceInstance, name: str) -> vim.VirtualMachine:
    return _find(si, vim.VirtualMachine, name)


def find_host(si: vim.ServiceInstance, name: str) -> vim.HostSystem:
    return _find(si, vim.HostSystem, name)


def find_datastore(si: vim.ServiceInstance, name: str) -> vim.Datastore:
    return _find(si, vim.Datastore, name)


def find_datacenter(si: vim.ServiceInstance, name: str = DEFAULT_DATACENTER) -> vim.Datacenter:
    return _find(si, vim.Datacenter, name)


def vm_devices(vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualDevice]:
    return list(vm.config.hardware.device)


def cdroms(vm: vim.VirtualMachine) -> list[vim.vm.device.VirtualCdrom]:
    return [d for d in vm_devices(vm) if isinstance(d, vim.vm.device.VirtualCdrom)]


def wait_for_task(si: vim.ServiceInstance, task: vim.Task, timeout: float = 60.0) -> Any:
    """Wait with a private PropertyCollector (WaitForUpdatesEx); return ``info.result`` or raise
    TaskFailed. Collects only state/error/result, which also works for vcsim's FileManager tasks."""
    pc = si.content.propertyCollector.CreatePropertyCollector()
    try:
        pc.CreateFilter(
            vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=task, skip=False)],
                propSet=[
                    vmodl.query.PropertyCollector.PropertySpec(
                        type=vim.Task, pathSet=["info.state", "info.error", "info.result"]
                    )
                ],
            ),
            True,
        )
        state: dict[str, Any] = {}
        version = ""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {task._moId} still {state.get('info.state')} after {timeout}s")
            opts = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=max(1, min(int(left), 10)))
            update = pc.WaitForUpdatesEx(version, opts)
            if update is None:
                continue
            version = update.version
            for fs in update.filterSet:
                for oc in fs.objectSet:
                    for change in oc.changeSet:
                        state[change.name] = change.val
            if state.get("info.state") == vim.TaskInfo.State.success:
                return state.get("info.result")
            if state.get("info.state") == vim.TaskInfo.State.error:
                # pyvmomi turns the LocalizedMethodFault into the fault itself, message in .msg
                fault = state.get("info.error")
                raise TaskFailed(fault, getattr(fault, "msg", None) or type(fault).__name__)
    finally:
        pc.DestroyPropertyCollector()


def task_state(si: vim.ServiceInstance, task: vim.Task) -> str:
    """One property read of ``info.state`` (safe for every task type)."""
    return get_property(si, task, "info.state")


def get_property(si: vim.ServiceInstance, obj: Any, path: str) -> Any:
    """One RetrievePropertiesEx for one property of one object (None when unset)."""
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=[path])],
    )
    pc = si.content.propertyCollector
    result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    for oc in result.objects if result else []:
        for p in oc.propSet:
            if p.name == path:
                return p.val
    return None


def vm_question(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> vim.vm.QuestionInfo | None:
    """``runtime.question`` of a VM, in one property read."""
    return get_property(si, vm, "runtime.question")


def wait_for_question(si: vim.ServiceInstance, vm: vim.VirtualMachine, timeout: float = 10.0) -> vim.vm.QuestionInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = vm_question(si, vm)
        if q is not None:
            return q
        time.sleep(0.05)
    raise TimeoutError(f"no question on {vm._moId} within {timeout}s")


def answer_question(vm: vim.VirtualMachine, question: vim.vm.QuestionInfo, label: str) -> None:
    """Answer by choice label (``button.yes``/``button.no``), as tools should (keys differ by version)."""
    for choice in question.choice.choiceInfo:
        if choice.label == label:
            vm.AnswerVM(question.id, choice.key)
            return
    raise LookupError(f"question {question.id} has no choice labelled {label!r}")


def power_on(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOn:
        wait_for_task(si, vm.PowerOnVM_Task())


def power_off(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
        wait_for_task(si, vm.PowerOffVM_Task())


def reconfigure(
    si: vim.ServiceInstance, vm: vim.VirtualMachine, spec: vim.vm.ConfigSpec, timeout: float = 60.0
) -> None:
    wait_for_task(si, vm.ReconfigVM_Task(spec=spec), timeout=timeout)


def set_extra_config(si: vim.ServiceInstance, vm: vim.VirtualMachine, values: Mapping[str, str]) -> None:
    spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in values.items()])
    reconfigure(si, vm, spec)


def iso_backing(datastore_path: str) -> vim.vm.device.VirtualCdrom.IsoBackingInfo:
    return vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=datastore_path)


@dataclass(frozen=True)
class DeviceKeys:
    """Keys the created VM's devices got (the server assigns them)."""

    ide: tuple[int, ...]
    sata: int | None
    scsi: int | None
    cdrom: int | None


def create_vm(
    si: vim.ServiceInstance,
    name: str | None = None,
    *,
    host: str = "DC0_H0",
    datastore: str = DEFAULT_DATASTORE,
    datacenter: str = DEFAULT_DATACENTER,
    cdrom: str | None = "ide",
    cdrom_iso: str | None = None,
    sata_controller: bool = True,
    disk: bool = True,
    nic: bool = True,
    extra_config: Mapping[str, str] | None = None,
    powered_on: bool = False,
) -> vim.VirtualMachine:
    """Create a VM of our own in the simulator, shaped like a usual vSphere VM.

    vcsim adds the default devices itself (IDE controllers 200/201, PS/2, PCI, SIO, keyboard, mouse,
    video, VMCI). On top: a SATA (AHCI) controller, a PVSCSI controller with a 1 MiB thin disk, a
    vmxnet3 NIC on "VM Network", and a first CD-ROM on IDE 0:0 (``cdrom="ide"``) or SATA 0:0
    (``cdrom="sata"``), empty and disconnected unless ``cdrom_iso`` gives a "[ds] path" ISO backing
    (then connected and start-connected).
    """
    name = name or f"test-vm-{uuid.uuid4().hex[:8]}"
    dc = find_datacenter(si, datacenter)
    host_obj = find_host(si, host)
    pool = host_obj.parent.resourcePool
    dev = vim.vm.device
    changes: list[vim.vm.device.VirtualDeviceSpec] = []

    def add(device: vim.vm.device.VirtualDevice, file_op: str | None = None) -> None:
        changes.append(dev.VirtualDeviceSpec(operation="add", fileOperation=file_op, device=device))

    if sata_controller:
        add(dev.VirtualAHCIController(key=-101, busNumber=0))
    if disk:
        add(dev.ParaVirtualSCSIController(key=-102, busNumber=0, sharedBus="noSharing"))
        add(
            dev.VirtualDisk(
                key=-103,
                controllerKey=-102,
                unitNumber=0,
                capacityInKB=1024,
                backing=dev.VirtualDisk.FlatVer2BackingInfo(
                    fileName=f"[{datastore}]", diskMode="persistent", thinProvisioned=True
                ),
            ),
            "create",
        )
    if nic:
        add(
            dev.VirtualVmxnet3(
                key=-104,
                backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
                connectable=dev.VirtualDevice.ConnectInfo(startConnected=True, connected=True, allowGuestControl=True),
            )
        )
    if cdrom:
        if cdrom == "ide":
            ckey = 200
        elif cdrom == "sata":
            if not sata_controller:
                raise ValueError("cdrom='sata' needs sata_controller=True")
            ckey = -101
        else:
            raise ValueError("cdrom must be 'ide', 'sata' or None")
        backing: vim.vm.device.VirtualDevice.BackingInfo
        if cdrom_iso:
            backing = iso_backing(cdrom_iso)
        else:
            backing = dev.VirtualCdrom.RemotePassthroughBackingInfo(deviceName="", exclusive=False)
        add(
            dev.VirtualCdrom(
                key=-105,
                controllerKey=ckey,
                unitNumber=0,
                backing=backing,
                connectable=dev.VirtualDevice.ConnectInfo(
                    startConnected=bool(cdrom_iso), connected=bool(cdrom_iso), allowGuestControl=True
                ),
            )
        )
    spec = vim.vm.ConfigSpec(
        name=name,
        guestId="otherLinux64Guest",
        numCPUs=1,
        memoryMB=64,
        files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
        deviceChange=changes,
        extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in (extra_config or {}).items()],
    )
    vm = wait_for_task(si, dc.vmFolder.CreateVM_Task(config=spec, pool=pool, host=host_obj))
    if powered_on:
        power_on(si, vm)
    return vm


def destroy_vm(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    """Power off (if needed) and destroy; ignores a VM that is already gone."""
    try:
        power_off(si, vm)
        wait_for_task(si, vm.Destroy_Task())
    except vmodl.fault.ManagedObjectNotFound:
        pass


def create_local_datastore(
    si: vim.ServiceInstance, host: str, name: str, path: str | os.PathLike[str] | None = None
) -> vim.Datastore:
    """A datastore mounted by one host only (``HostDatastoreSystem.CreateLocalDatastore``), for
    migration tests. ``path`` is a directory on this machine (the harness runs here); default: a new
    temporary directory (left for the OS to clean, as the harness keeps using it)."""
    directory = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix=f"vcsim-{name}-"))
    directory.mkdir(parents=True, exist_ok=True)
    host_obj = find_host(si, host)
    return host_obj.configManager.datastoreSystem.CreateLocalDatastore(name=name, path=str(directory))


def hosts_seeing(si: vim.ServiceInstance, datastore: str) -> set[str]:
    """Names of the hosts that mount a datastore (from each host's ``datastore`` list)."""
    return {
        row["name"]
        for row in retrieve(si, vim.HostSystem, ["name", "datastore"])
        if any(ds.name == datastore for ds in row.get("datastore", []))
    }


# ---------------------------------------------------------------------------------------------------------
# Stock vcsim (the same binary with -stock: govmomi's simulator with nothing in front; docs/testing.md)


class StockVcsim(Vcsim):
    """govmomi's simulator as the stock vcsim command serves it: no fault injection, no repairs of its model,
    no control API. Started, addressed and logged into exactly like ``Vcsim`` (same TLS certificate, startup
    line and credentials); ``set_faults``/``counters``/``reset_faults`` raise ``ValueError`` (there is nothing
    to set or count)."""

    def __init__(self, binary: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        extra = tuple(kwargs.pop("extra_args", ()))
        if kwargs.get("latency_ms"):
            raise ValueError("stock vcsim injects no latency (it is the harness's)")
        super().__init__(binary, extra_args=("-stock", *extra), **kwargs)

    def start(self) -> StockVcsim:
        super().start()
        try:
            mode = self._control("GET", "").get("mode")
        except BaseException:
            self.stop()
            raise
        if mode != "stock":  # an older binary would have started the harness instead
            self.stop()
            raise HarnessUnavailable(f"the binary did not start stock vcsim (control API says mode={mode!r})")
        return self


def datastore_mounts(si: vim.ServiceInstance) -> dict[str, set[str]]:
    """What each datastore's own ``Datastore.host`` mount list names: {datastore: {host names}}."""
    names = {row["obj"]._moId: row["name"] for row in retrieve(si, vim.HostSystem, ["name"])}
    return {
        row["name"]: {names.get(m.key._moId, m.key._moId) for m in row.get("host", [])}
        for row in retrieve(si, vim.Datastore, ["name", "host"])
    }


def host_datastores(si: vim.ServiceInstance) -> dict[str, set[str]]:
    """What each host's own ``HostSystem.datastore`` list names: {host: {datastore names}}."""
    return {
        row["name"]: {ds.name for ds in row.get("datastore", [])}
        for row in retrieve(si, vim.HostSystem, ["name", "datastore"])
    }

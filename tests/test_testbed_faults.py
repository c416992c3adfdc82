"""The vcsim harness produces each fault it promises, driven through pyvmomi (live: needs the harness)."""

from __future__ import annotations

import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from pyVmomi import SoapStubAdapter, vim, vmodl
from vsphere_harness import (
    TaskFailed,
    Vcsim,
    cdroms,
    connect,
    create_local_datastore,
    datastore_url,
    disconnect,
    download,
    find_datastore,
    find_vm,
    get_property,
    hosts_seeing,
    http_session,
    iso_backing,
    make_directory,
    power_off,
    power_on,
    reconfigure,
    retrieve,
    set_extra_config,
    ssl_context,
    task_state,
    upload,
    vm_devices,
    vm_question,
    wait_for_question,
    wait_for_task,
)

pytestmark = pytest.mark.live

ISO_A = "[LocalDS_0] configdrive/a.iso"
ISO_B = "[LocalDS_0] configdrive/b.iso"
Device = vim.vm.device


def edit(device: Device.VirtualDevice) -> vim.vm.ConfigSpec:
    return vim.vm.ConfigSpec(deviceChange=[Device.VirtualDeviceSpec(operation="edit", device=device)])


def swap_iso_spec(vm: vim.VirtualMachine, iso: str = ISO_B) -> vim.vm.ConfigSpec:
    cd = cdroms(vm)[0]
    cd.backing = iso_backing(iso)
    return edit(cd)


def new_cdrom(controller_key: int, unit: int = 0) -> Device.VirtualCdrom:
    return Device.VirtualCdrom(
        key=-1,
        controllerKey=controller_key,
        unitNumber=unit,
        backing=iso_backing(ISO_A),
        connectable=Device.VirtualDevice.ConnectInfo(startConnected=True, connected=True),
    )


def add_spec(device: Device.VirtualDevice) -> vim.vm.ConfigSpec:
    return vim.vm.ConfigSpec(deviceChange=[Device.VirtualDeviceSpec(operation="add", device=device)])


def sata_key(vm: vim.VirtualMachine) -> int:
    return next(d.key for d in vm_devices(vm) if isinstance(d, Device.VirtualAHCIController))


# ---------------------------------------------------------------------------------------------------------
# Credentials and TLS


def test_login_needs_the_generated_credentials(vcsim_faults: Vcsim) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        connect(vcsim_faults, password=vcsim_faults.password + "x")
    with pytest.raises(vim.fault.InvalidLogin):
        connect(vcsim_faults, username="root")
    si = connect(vcsim_faults)
    assert si.content.sessionManager.currentSession.userName == vcsim_faults.username
    disconnect(si)


def test_password_is_not_on_the_command_line_nor_in_the_log(vcsim: Vcsim) -> None:
    assert vcsim.process is not None
    cmdline = Path(f"/proc/{vcsim.process.pid}/cmdline").read_bytes()
    assert vcsim.password.encode() not in cmdline
    assert len(vcsim.password) >= 16
    assert vcsim.password not in vcsim.log_tail(10**7)


def test_tls_is_verified_against_the_harness_ca(vcsim: Vcsim) -> None:
    assert vcsim.scheme == "https" and vcsim.ca_file
    # Trusting only the system CAs, the self-signed certificate is refused...
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection((vcsim.host, vcsim.port), timeout=10) as raw,
        ssl.create_default_context().wrap_socket(raw, server_hostname=vcsim.host),
    ):
        pass
    # ...and with the CA file it verifies, hostname (IP SAN) included.
    ctx = ssl.create_default_context(cafile=vcsim.ca_file)
    with (
        socket.create_connection((vcsim.host, vcsim.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=vcsim.host) as tls,
    ):
        cert = tls.getpeercert()
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]


def test_plain_http_mode_and_start_up_flags(vcsim_binary: Path) -> None:
    with Vcsim(vcsim_binary, plain_http=True, vms=3, latency_ms=40) as sim:
        assert sim.url.startswith("http://") and sim.ca_file is None
        si = connect(sim)
        names = {row["name"] for row in retrieve(si, vim.VirtualMachine, ["name"])}
        assert len(names) == 6 and "DC0_H0_VM2" in names  # -vms: per standalone host and per cluster
        disconnect(si)
        assert sim.faults()["latency_ms"] == 40
        assert sim.reset_faults()["latency_ms"] == 40  # reset returns to the command line's settings


# ---------------------------------------------------------------------------------------------------------
# 1. The locked-door question


@pytest.fixture
def running_vm_with_iso(make_vm) -> vim.VirtualMachine:  # type: ignore[no-untyped-def]
    return make_vm(cdrom="sata", cdrom_iso=ISO_A, powered_on=True)


def test_locked_door_question_yes_applies_the_change(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, running_vm_with_iso: vim.VirtualMachine
) -> None:
    vm = running_vm_with_iso
    vcsim_faults.set_faults(locked_door={"enabled": True, "vms": [vm.name]})
    before = vm.config.changeVersion
    task = vm.ReconfigVM_Task(spec=swap_iso_spec(vm))

    q = wait_for_question(vsphere, vm)
    assert [m.id for m in q.message] == ["msg.cdromdisconnect.locked"]
    assert "locked the CD-ROM door" in q.text
    assert {c.label: c.key for c in q.choice.choiceInfo} == {"button.yes": "0", "button.no": "1"}
    time.sleep(0.3)
    assert task_state(vsphere, task) == "running"  # the task blocks on the question
    assert cdroms(vm)[0].backing.fileName == ISO_A
    assert vcsim_faults.counters()["pending_questions"][0]["vm_name"] == vm.name

    vm.AnswerVM(q.id, "0")
    wait_for_task(vsphere, task)
    assert cdroms(vm)[0].backing.fileName == ISO_B
    assert vm_question(vsphere, vm) is None
    assert vm.config.changeVersion != before
    faults = vcsim_faults.counters()["faults"]
    assert faults["questions_asked"] == 1 and faults["questions_answered_yes"] == 1


def test_locked_door_question_no_fails_and_changes_nothing(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, running_vm_with_iso: vim.VirtualMachine
) -> None:
    vm = running_vm_with_iso
    vcsim_faults.set_faults(locked_door={"enabled": True})
    before = vm.config.changeVersion
    task = vm.ReconfigVM_Task(spec=swap_iso_spec(vm))
    q = wait_for_question(vsphere, vm)
    vm.AnswerVM(q.id, "1")
    with pytest.raises(TaskFailed) as err:
        wait_for_task(vsphere, task)
    assert "msg.cdromdisconnect.locked" in err.value.message
    assert cdroms(vm)[0].backing.fileName == ISO_A
    assert vm.config.changeVersion == before
    assert vm_question(vsphere, vm) is None


def test_locked_door_unanswered_times_out(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, running_vm_with_iso: vim.VirtualMachine
) -> None:
    vm = running_vm_with_iso
    vcsim_faults.set_faults(locked_door={"enabled": True, "timeout_seconds": 1})
    task = vm.ReconfigVM_Task(spec=swap_iso_spec(vm))
    assert wait_for_question(vsphere, vm).id
    with pytest.raises(TaskFailed) as err:
        wait_for_task(vsphere, task, timeout=15)
    assert "msg.disk.onlineConnectFail" in err.value.message
    assert [m.key for m in err.value.fault.faultMessage] == ["msg.disk.onlineConnectFail"]
    assert vm_question(vsphere, vm) is None
    assert cdroms(vm)[0].backing.fileName == ISO_A
    assert vcsim_faults.counters()["faults"]["questions_timed_out"] == 1


def test_locked_door_also_guards_disconnect_and_remove(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, running_vm_with_iso: vim.VirtualMachine
) -> None:
    vm = running_vm_with_iso
    vcsim_faults.set_faults(locked_door={"enabled": True})
    cd = cdroms(vm)[0]
    cd.connectable.connected = False
    task = vm.ReconfigVM_Task(spec=edit(cd))
    vm.AnswerVM(wait_for_question(vsphere, vm).id, "0")
    wait_for_task(vsphere, task)
    assert cdroms(vm)[0].connectable.connected is False

    # A disconnected drive is no longer locked: reconnecting asks nothing.
    cd = cdroms(vm)[0]
    cd.connectable.connected = True
    reconfigure(vsphere, vm, edit(cd))

    # Removing the connected (SATA, so hot-pluggable) drive asks too.
    remove = vim.vm.ConfigSpec(deviceChange=[Device.VirtualDeviceSpec(operation="remove", device=cdroms(vm)[0])])
    task = vm.ReconfigVM_Task(spec=remove)
    vm.AnswerVM(wait_for_question(vsphere, vm).id, "0")
    wait_for_task(vsphere, task)
    assert cdroms(vm) == []
    assert vcsim_faults.counters()["faults"]["questions_asked"] == 2


def test_locked_door_not_asked_when_off_out_of_scope_or_switched_off(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, make_vm
) -> None:  # type: ignore[no-untyped-def]
    off_vm = make_vm(cdrom="sata", cdrom_iso=ISO_A)
    other = make_vm(cdrom="sata", cdrom_iso=ISO_A, powered_on=True)
    vcsim_faults.set_faults(locked_door={"enabled": True, "vms": ["some-other-vm"]})
    reconfigure(vsphere, other, swap_iso_spec(other), timeout=10)  # not in scope
    vcsim_faults.set_faults(locked_door={"enabled": True, "vms": []})
    reconfigure(vsphere, off_vm, swap_iso_spec(off_vm), timeout=10)  # powered off: the guest holds nothing
    vcsim_faults.set_faults(locked_door={"enabled": False})
    reconfigure(vsphere, other, swap_iso_spec(other, ISO_A), timeout=10)
    assert cdroms(off_vm)[0].backing.fileName == ISO_B
    assert cdroms(other)[0].backing.fileName == ISO_A
    assert vcsim_faults.counters()["faults"]["questions_asked"] == 0


def test_locked_door_avoided_by_kb2144053_extra_config(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, make_vm
) -> None:  # type: ignore[no-untyped-def]
    vcsim_faults.set_faults(locked_door={"enabled": True, "timeout_seconds": 2})
    both = make_vm(
        cdrom="sata",
        cdrom_iso=ISO_A,
        extra_config={"cdrom.showIsoLockWarning": "FALSE", "msg.autoanswer": "TRUE"},
        powered_on=True,
    )
    reconfigure(vsphere, both, swap_iso_spec(both), timeout=10)
    assert cdroms(both)[0].backing.fileName == ISO_B

    only_one = make_vm(cdrom="sata", cdrom_iso=ISO_A, extra_config={"msg.autoanswer": "TRUE"}, powered_on=True)
    task = only_one.ReconfigVM_Task(spec=swap_iso_spec(only_one))
    only_one.AnswerVM(wait_for_question(vsphere, only_one).id, "0")
    wait_for_task(vsphere, task)
    faults = vcsim_faults.counters()["faults"]
    assert faults["questions_auto_answered"] == 1 and faults["questions_asked"] == 1


def test_reconfigure_while_a_question_is_pending_and_bad_answers(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, running_vm_with_iso: vim.VirtualMachine
) -> None:
    vm = running_vm_with_iso
    vcsim_faults.set_faults(locked_door={"enabled": True})
    task = vm.ReconfigVM_Task(spec=swap_iso_spec(vm))
    q = wait_for_question(vsphere, vm)
    with pytest.raises(TaskFailed) as err:
        reconfigure(vsphere, vm, vim.vm.ConfigSpec(annotation="meanwhile"))
    assert isinstance(err.value.fault, vim.fault.TaskInProgress)
    with pytest.raises(vmodl.fault.InvalidArgument):
        vm.AnswerVM("no-such-question", "0")
    with pytest.raises(vmodl.fault.InvalidArgument):
        vm.AnswerVM(q.id, "7")
    vm.AnswerVM(q.id, "0")
    wait_for_task(vsphere, task)


# ---------------------------------------------------------------------------------------------------------
# 2. IDE hot-plug refusal


def test_ide_hot_add_and_remove_refused_when_powered_on(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, make_vm
) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm(cdrom="ide", powered_on=True)
    count = len(cdroms(vm))
    with pytest.raises(TaskFailed) as err:
        reconfigure(vsphere, vm, add_spec(new_cdrom(201)))
    assert isinstance(err.value.fault, vim.fault.InvalidDeviceOperation)
    assert "not supported" in err.value.message
    assert len(cdroms(vm)) == count

    remove = vim.vm.ConfigSpec(deviceChange=[Device.VirtualDeviceSpec(operation="remove", device=cdroms(vm)[0])])
    with pytest.raises(TaskFailed):
        reconfigure(vsphere, vm, remove)
    assert len(cdroms(vm)) == count
    assert vcsim_faults.counters()["faults"]["ide_hotplug_refused"] == 2


def test_ide_add_allowed_when_powered_off_and_sata_when_on(vsphere: vim.ServiceInstance, make_vm) -> None:  # type: ignore[no-untyped-def]
    off = make_vm(cdrom=None)
    reconfigure(vsphere, off, add_spec(new_cdrom(201)))
    assert [(c.controllerKey, c.unitNumber) for c in cdroms(off)] == [(201, 0)]

    on = make_vm(cdrom=None, powered_on=True)
    reconfigure(vsphere, on, add_spec(new_cdrom(sata_key(on), 1)))
    assert [(c.controllerKey, c.unitNumber) for c in cdroms(on)] == [(sata_key(on), 1)]


def test_ide_refusal_can_be_switched_off(vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm(cdrom=None, powered_on=True)
    vcsim_faults.set_faults(ide_hotplug_refused=False)
    reconfigure(vsphere, vm, add_spec(new_cdrom(200)))
    assert len(cdroms(vm)) == 1


# ---------------------------------------------------------------------------------------------------------
# 3. Session expiry and strict authentication


def test_session_expires_after_n_calls_until_a_new_login(vcsim_faults: Vcsim) -> None:
    si = connect(vcsim_faults)
    vcsim_faults.set_faults(session_expiry={"after_calls": 3})
    for _ in range(3):
        si.CurrentTime()
    with pytest.raises(vim.fault.NotAuthenticated):
        si.CurrentTime()  # the 4th call trips the limit: every session seen so far is terminated
    with pytest.raises(vim.fault.NotAuthenticated):
        retrieve(si, vim.VirtualMachine, ["name"])
    again = connect(vcsim_faults)
    assert len(retrieve(again, vim.VirtualMachine, ["name"])) >= 4
    faults = vcsim_faults.counters()["faults"]
    assert faults["sessions_expired"] >= 1 and faults["not_authenticated"] >= 2
    disconnect(again)


def test_expire_sessions_now_and_strict_auth(vcsim_faults: Vcsim) -> None:
    si = connect(vcsim_faults)
    assert vcsim_faults.expire_sessions() >= 1  # known to the harness from its login on, before any other call
    # vcsim alone would answer RetrievePropertiesEx without a session; vCenter (and the harness) don't.
    with pytest.raises(vim.fault.NotAuthenticated):
        retrieve(si, vim.VirtualMachine, ["name"])


# ---------------------------------------------------------------------------------------------------------
# 4 and 6. Datastore /folder: transient failures, authentication, missing folders


def test_upload_fails_with_503_then_succeeds(vcsim_faults: Vcsim, vsphere: vim.ServiceInstance) -> None:
    make_directory(vsphere, "[LocalDS_0] flaky")
    vcsim_faults.set_faults(upload_failures={"count": 2, "mode": "status", "status": 503})
    codes = [upload(vcsim_faults, vsphere, "LocalDS_0", "flaky/x.iso", b"data").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert download(vcsim_faults, vsphere, "LocalDS_0", "flaky/x.iso").content == b"data"
    assert vcsim_faults.counters()["faults"]["upload_failed"] == 2


def test_upload_connection_reset_then_succeeds(vcsim_faults: Vcsim, vsphere: vim.ServiceInstance) -> None:
    make_directory(vsphere, "[LocalDS_0] flaky")
    vcsim_faults.set_faults(upload_failures={"count": 1, "mode": "reset"})
    with pytest.raises(requests.ConnectionError):
        upload(vcsim_faults, vsphere, "LocalDS_0", "flaky/y.iso", b"x" * 100_000)
    assert upload(vcsim_faults, vsphere, "LocalDS_0", "flaky/y.iso", b"y").status_code == 200


def test_folder_needs_a_valid_session(vcsim_faults: Vcsim, vsphere: vim.ServiceInstance) -> None:
    make_directory(vsphere, "[LocalDS_0] auth")
    url = datastore_url(vcsim_faults, "LocalDS_0", "auth/f.txt")
    with requests.Session() as s:
        s.trust_env = False
        assert s.put(url, data=b"x", verify=vcsim_faults.ca_file).status_code == 401
        assert s.get(url, verify=vcsim_faults.ca_file).status_code == 401
        bogus = {"Cookie": 'vmware_soap_session="00000000-0000-0000-0000-000000000000"'}
        assert s.put(url, data=b"x", headers=bogus, verify=vcsim_faults.ca_file).status_code == 401
        basic = (vcsim_faults.username, vcsim_faults.password)
        assert s.put(url, data=b"basic", auth=basic, verify=vcsim_faults.ca_file).status_code == 200
    assert upload(vcsim_faults, vsphere, "LocalDS_0", "auth/f.txt", b"cookie").status_code == 200
    ticket = vsphere.content.sessionManager.AcquireGenericServiceTicket(
        spec=vim.SessionManager.HttpServiceRequestSpec(method="httpPut", url=url)
    )
    with requests.Session() as s:
        s.trust_env = False
        cgi = {"Cookie": f"vmware_cgi_ticket={ticket.id}"}
        assert s.put(url, data=b"ticket", headers=cgi, verify=vcsim_faults.ca_file).status_code == 200
    other = connect(vcsim_faults)
    disconnect(other)  # a logged-out session's cookie no longer works
    assert upload(vcsim_faults, other, "LocalDS_0", "auth/f.txt", b"late").status_code == 401
    assert vcsim_faults.counters()["faults"]["folder_unauthorized"] == 4


def test_put_into_a_missing_folder_is_404(vcsim_faults: Vcsim, vsphere: vim.ServiceInstance) -> None:
    assert upload(vcsim_faults, vsphere, "LocalDS_0", "no-such-dir/a.iso", b"x").status_code == 404
    # vcsim would join "a/../../escape.iso" onto the datastore folder and write outside it.
    escape = f"https://{vcsim_faults.netloc}/folder/a/%2e%2e/%2e%2e/escape.iso?dcPath=DC0&dsName=LocalDS_0"
    with http_session(vcsim_faults, vsphere) as s:
        assert s.put(escape, data=b"x").status_code == 400
    make_directory(vsphere, "[LocalDS_0] no-such-dir/deeper")
    assert upload(vcsim_faults, vsphere, "LocalDS_0", "no-such-dir/deeper/a.iso", b"x").status_code == 200
    vcsim_faults.set_faults(folder_require_parent=False)  # vcsim's own behaviour: creates the parents
    assert upload(vcsim_faults, vsphere, "LocalDS_0", "lax/a/b.iso", b"x").status_code == 200
    faults = vcsim_faults.counters()["faults"]
    assert faults["folder_missing_parent"] == 1 and faults["folder_bad_path"] == 1


# ---------------------------------------------------------------------------------------------------------
# 5. Failing reconfigure, 7. changeVersion, extraConfig


def test_injected_reconfigure_failure_applies_nothing(
    vcsim_faults: Vcsim, vsphere: vim.ServiceInstance, fresh_vm: vim.VirtualMachine
) -> None:
    vcsim_faults.set_faults(reconfig_failures={"count": 1, "vms": [fresh_vm.name], "message": "disk full"})
    with pytest.raises(TaskFailed) as err:
        reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="first"))
    assert isinstance(err.value.fault, vim.fault.GenericVmConfigFault)
    assert err.value.message == "disk full"
    assert fresh_vm.config.annotation in (None, "")
    reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="second"))
    assert fresh_vm.config.annotation == "second"
    vcsim_faults.set_faults(reconfig_failures={"count": 1, "vms": [], "fault": "SystemError"})
    with pytest.raises(TaskFailed) as err:
        reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="third"))
    assert isinstance(err.value.fault, vmodl.fault.SystemError)
    assert vcsim_faults.counters()["faults"]["reconfig_failed"] == 2


def test_change_version_is_enforced_and_bumped(vsphere: vim.ServiceInstance, fresh_vm: vim.VirtualMachine) -> None:
    v1 = fresh_vm.config.changeVersion
    assert v1  # vcsim sets none; the harness stamps every VM
    reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="a", changeVersion=v1))
    v2 = fresh_vm.config.changeVersion
    assert v2 != v1
    with pytest.raises(TaskFailed) as err:
        reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="stale", changeVersion=v1))
    assert isinstance(err.value.fault, vim.fault.ConcurrentAccess)
    assert fresh_vm.config.annotation == "a"
    assert fresh_vm.config.changeVersion == v2  # a failed reconfigure changes nothing
    reconfigure(vsphere, fresh_vm, vim.vm.ConfigSpec(annotation="b"))  # no changeVersion: no check
    assert fresh_vm.config.changeVersion not in (v1, v2)


def test_extra_config_keys_are_replaced_and_removed(vsphere: vim.ServiceInstance, fresh_vm: vim.VirtualMachine) -> None:
    set_extra_config(vsphere, fresh_vm, {"guestinfo.a": "1"})
    set_extra_config(vsphere, fresh_vm, {"guestinfo.a": "2", "guestinfo.b": "x"})
    values = [(o.key, o.value) for o in fresh_vm.config.extraConfig if o.key.startswith("guestinfo.")]
    assert values == [("guestinfo.a", "2"), ("guestinfo.b", "x")]
    set_extra_config(vsphere, fresh_vm, {"guestinfo.a": ""})
    assert [o.key for o in fresh_vm.config.extraConfig if o.key.startswith("guestinfo.")] == ["guestinfo.b"]


# ---------------------------------------------------------------------------------------------------------
# 8. Latency


def test_latency_is_injected_per_request(vcsim_faults: Vcsim, vsphere: vim.ServiceInstance) -> None:
    def timed(n: int = 5) -> float:
        start = time.monotonic()
        for _ in range(n):
            vsphere.CurrentTime()
        return (time.monotonic() - start) / n

    base = timed()
    vcsim_faults.set_faults(latency_ms=120)
    slow = timed()
    assert slow >= 0.12 and slow - base >= 0.1
    vcsim_faults.set_faults(latency_ms=0)
    assert timed() < 0.1


def test_a_refused_api_version_is_a_fault_without_detail_and_a_listed_one_is_served(vcsim_faults: Vcsim) -> None:
    vcsim_faults.set_faults(refused_versions=["5.5"])
    parts = urlsplit(vcsim_faults.url)
    stub = SoapStubAdapter(host=parts.hostname, port=parts.port, version="vim.version.version9",
                           sslContext=ssl_context(vcsim_faults))  # fmt: skip
    with pytest.raises(vmodl.RuntimeFault) as refused:
        vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
    assert refused.value.msg == "Request version 'urn:vim25/5.5' and namespace 'urn:vim25' are not supported"
    assert type(refused.value) is vmodl.RuntimeFault  # no detail: pyVmomi's reading of a bare faultstring
    si = connect(vcsim_faults)  # SmartConnect: the newest version /sdk/vimServiceVersions.xml lists, 6.5
    try:
        assert si._stub.version == "vim.version.version11" and si.CurrentTime() is not None
    finally:
        disconnect(si)
    assert vcsim_faults.counters()["faults"]["version_refused"] == 1


# ---------------------------------------------------------------------------------------------------------
# Inventory: a datastore seen by one host, and what vcsim's default model holds


def test_datastore_seen_by_one_host(vsphere: vim.ServiceInstance, tmp_path: Path) -> None:
    ds = create_local_datastore(vsphere, "DC0_C0_H1", "LocalDS_H1", tmp_path / "ds")
    assert hosts_seeing(vsphere, "LocalDS_H1") == {"DC0_C0_H1"}
    assert [m.key.name for m in ds.host] == ["DC0_C0_H1"]
    assert hosts_seeing(vsphere, "LocalDS_0") == {"DC0_H0", "DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"}
    # The harness repairs vcsim's Datastore.host, which lists only the last host of a shared datastore.
    assert {m.key.name for m in find_datastore(vsphere, "LocalDS_0").host} == hosts_seeing(vsphere, "LocalDS_0")
    make_directory(vsphere, "[LocalDS_H1] iso")
    assert (tmp_path / "ds" / "iso").is_dir()


def test_default_inventory_is_as_documented(vsphere: vim.ServiceInstance) -> None:
    vms = {r["name"]: r for r in retrieve(vsphere, vim.VirtualMachine, ["name", "runtime.powerState", "runtime.host"])}
    defaults = {"DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"}
    assert defaults <= set(vms)
    assert all(vms[n]["runtime.powerState"] == "poweredOn" for n in defaults)
    assert vms["DC0_H0_VM0"]["runtime.host"].name == "DC0_H0"
    vm = find_vm(vsphere, "DC0_H0_VM0")
    table = [(type(d).__name__.rsplit(".", 1)[-1], d.key, d.controllerKey, d.unitNumber) for d in vm_devices(vm)]
    # vcsim's model puts the default CD-ROM on the PVSCSI controller (202), unit 0 like the disk; their
    # keys are random, hence None here. No SATA controller.
    masked = [
        (kind, None if kind in ("VirtualCdrom", "VirtualDisk") else key, ck, unit) for kind, key, ck, unit in table
    ]
    assert masked == [
        ("VirtualIDEController", 200, None, None),
        ("VirtualIDEController", 201, None, None),
        ("VirtualPS2Controller", 300, None, None),
        ("VirtualPCIController", 100, None, None),
        ("VirtualSIOController", 400, None, None),
        ("VirtualKeyboard", 600, 300, 0),
        ("VirtualPointingDevice", 700, 300, 1),
        ("VirtualVideoCard", 500, 100, 0),
        ("VirtualVMCIDevice", 12000, 100, 17),
        ("ParaVirtualSCSIController", 202, None, None),
        ("VirtualCdrom", None, 202, 0),
        ("VirtualDisk", None, 202, 0),
        ("VirtualE1000", 4000, 100, 7),
    ]
    assert cdroms(vm)[0].connectable.connected is True
    assert get_property(vsphere, vm, "config.changeVersion")
    assert [dc.name for dc in vsphere.content.rootFolder.childEntity] == ["DC0"]


def test_control_api_validates_and_merges(vcsim_faults: Vcsim) -> None:
    with pytest.raises(ValueError, match="400"):
        vcsim_faults.set_faults(no_such_fault=True)
    with pytest.raises(ValueError, match="400"):
        vcsim_faults.set_faults(upload_failures={"mode": "sometimes"})
    with pytest.raises(ValueError, match="refused_versions"):  # the SOAPAction's form would never match
        vcsim_faults.set_faults(refused_versions=["urn:vim25/5.5"])
    cfg = vcsim_faults.set_faults(locked_door={"vms": ["x"]})
    assert cfg["locked_door"]["vms"] == ["x"] and cfg["locked_door"]["timeout_seconds"] == 30
    assert cfg["folder_auth"] is True and cfg["ide_hotplug_refused"] is True
    assert vcsim_faults.reset_faults()["locked_door"]["vms"] == []


def test_power_helpers(vsphere: vim.ServiceInstance, fresh_vm: vim.VirtualMachine) -> None:
    power_on(vsphere, fresh_vm)
    assert fresh_vm.runtime.powerState == "poweredOn"
    power_off(vsphere, fresh_vm)
    assert fresh_vm.runtime.powerState == "poweredOff"


def test_parallel_reconfigures_on_separate_sessions(vcsim_faults: Vcsim, make_vm) -> None:  # type: ignore[no-untyped-def]
    vms = [make_vm() for _ in range(6)]

    def work(vm_id: str) -> str:
        si = connect(vcsim_faults)
        try:
            vm = vim.VirtualMachine(vm_id, si._stub)
            for i in range(3):
                reconfigure(si, vm, vim.vm.ConfigSpec(annotation=f"round {i}"))
            return vm.config.changeVersion
        finally:
            disconnect(si)

    with ThreadPoolExecutor(max_workers=6) as pool:
        versions = list(pool.map(work, [vm._moId for vm in vms]))
    assert len(set(versions)) == len(vms)
    assert all(vm.config.annotation == "round 2" for vm in vms)

"""Facts pages read from the answer's XML (vsphere/collector_xml.py) hold what pyVmomi's deserializer made of the
same answer (tests/facts_reference.py): the same VmFacts, the same CD-ROM objects sent back by an edit or a
removal, the same faults; on answers of the harness and of stock vcsim, paged ones included, and on generated
answers of every shape the facts read."""

from __future__ import annotations

from typing import Any

import pytest
from facts_reference import extra_config_dict, pyvmomi_facts_page, raw_by_key, read_devices
from hypothesis import given, settings
from hypothesis import strategies as st
from pyVmomi import SoapAdapter, VmomiSupport, vim, vmodl
from tool_fixtures import settings_for
from vsphere_harness import find_vm, reconfigure, set_extra_config

from esxi_configdrive.vsphere import inventory
from esxi_configdrive.vsphere.collector_xml import Reader, retrieve_pages
from esxi_configdrive.vsphere.connection import Session
from esxi_configdrive.vsphere_values import VmFacts

PC = vmodl.query.PropertyCollector
VERSION = "vim.version.version11"
dev = vim.vm.device


def same_objects(a: Any, b: Any) -> bool:
    """pyVmomi objects equal as pyVmomi would send them."""
    return type(a) is type(b) and SoapAdapter.Serialize(a, version=VERSION) == SoapAdapter.Serialize(b, version=VERSION)


def assert_same_facts(xml: dict[str, VmFacts], reference: dict[str, VmFacts]) -> None:
    assert xml.keys() == reference.keys()
    for moid, want in reference.items():
        got = xml[moid]
        assert got == want  # every compared field: devices, extraConfig, datastores, paths, ...
        assert (got.host, got.datacenter) == (want.host, want.datacenter)
        cdroms = {c.key for c in want.devices.cdroms}
        assert set(got.raw_devices) == cdroms
        for key in cdroms:  # what an edit or a removal sends back, exactly as pyVmomi read it
            assert same_objects(got.raw_devices[key], want.raw_devices[key])


def refs_of(session: Session, vms: list[Any]) -> list[vim.VirtualMachine]:
    return [vim.VirtualMachine(vm._moId, session.stub) for vm in vms]


# ---- live: the harness and stock vcsim ----------------------------------------------------------------------


@pytest.mark.live
def test_a_page_of_varied_vms_reads_as_pyvmomi_reads_it(session, vcsim_faults, vsphere, make_vm):
    vcsim_faults.set_faults(extra_config_merge=False)  # vcsim appends: repeated keys, the last wins
    odd = "a <b> & \"c\" 'd' \u00e9\u4e2d\n\ttab"
    made = [
        make_vm(cdrom="ide"),
        make_vm(cdrom="sata", cdrom_iso="[LocalDS_0] iso/seed.iso", powered_on=True),
        make_vm(cdrom=None, nic=False, disk=False, sata_controller=False),
        make_vm(extra_config={"guestinfo.a": "1", "odd": odd, "num": "5"}),
    ]
    set_extra_config(vsphere, made[3], {"guestinfo.a": "2", "num": ""})
    two_nics = vim.vm.ConfigSpec(deviceChange=[
        dev.VirtualDeviceSpec(operation="add", device=dev.VirtualE1000(
            key=-1, backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"))),
        dev.VirtualDeviceSpec(operation="add", device=dev.VirtualCdrom(
            key=-2, controllerKey=201, unitNumber=0,
            backing=dev.VirtualCdrom.IsoBackingInfo(fileName="[LocalDS_0] other.iso"))),
    ])  # fmt: skip
    reconfigure(vsphere, made[0], two_nics)
    refs = refs_of(session, [*made, find_vm(vsphere, "DC0_H0_VM0")])
    xml = inventory.fetch_many_vm_facts(session, refs)
    assert_same_facts(xml, pyvmomi_facts_page(session, refs))
    shapes = [xml[r._moId].devices for r in refs]
    assert [len(d.cdroms) for d in shapes[:3]] == [2, 1, 0] and len(shapes[0].nics) == 2
    assert shapes[1].cdroms[0].iso == "[LocalDS_0] iso/seed.iso" and shapes[1].cdroms[0].connected
    assert xml[refs[3]._moId].extra_config["guestinfo.a"] == "2" and "num" not in xml[refs[3]._moId].extra_config
    assert xml[refs[3]._moId].extra_config["odd"] == odd
    assert inventory.fetch_vm_facts(session, refs[1]) == xml[refs[1]._moId]


@pytest.mark.live
def test_a_paged_answer_is_followed_through_its_continuation_tokens(session, vcsim_faults, vsphere):
    index = inventory.vm_name_index(session)
    refs = [index[name][0] for name in sorted(index)[:12]]
    whole = inventory.fetch_many_vm_facts(session, refs)
    vcsim_faults.reset_faults()  # and the counters
    vcsim_faults.set_faults(collector_page_size=2)  # the VMs, their ancestors and datastores: 2 objects a page
    paged = inventory.fetch_many_vm_facts(session, refs)
    calls = vcsim_faults.counters()["soap_by_method"]
    assert calls["RetrievePropertiesEx"] == 1 and calls["ContinueRetrievePropertiesEx"] >= len(refs) // 2
    assert len(refs) >= 4 and len(paged) == len(refs)
    assert_same_facts(paged, whole)
    assert_same_facts(paged, pyvmomi_facts_page(session, refs))  # pyVmomi's path follows the same tokens


@pytest.mark.live
def test_a_vm_gone_raises_pyvmomis_fault(session, vcsim_faults, make_vm):
    gone = vim.VirtualMachine("vm-999999", session.stub)
    with pytest.raises(vmodl.fault.ManagedObjectNotFound) as xml_fault:
        list(retrieve_pages(session, inventory._facts_spec([gone])))
    with pytest.raises(vmodl.fault.ManagedObjectNotFound) as reference:
        pyvmomi_facts_page(session, [gone])
    assert type(xml_fault.value) is type(reference.value) and xml_fault.value.obj == reference.value.obj
    assert xml_fault.value.msg == reference.value.msg


@pytest.mark.live
def test_a_lost_session_is_logged_in_again(session, vcsim_faults, make_vm):
    ref = refs_of(session, [make_vm()])[0]
    first = inventory.fetch_vm_facts(session, ref)
    generation = session.login_generation
    assert vcsim_faults.expire_sessions() >= 1  # the next call answers NotAuthenticated (HTTP 500)
    assert inventory.fetch_vm_facts(session, ref) == first
    assert session.login_generation == generation + 1


@pytest.mark.live
def test_per_thread_collectors_are_used(session, vcsim_faults, make_vm):
    ref = refs_of(session, [make_vm()])[0]
    session.per_thread_collectors = True
    vcsim_faults.reset_faults()  # and the counters
    inventory.fetch_vm_facts(session, ref)
    inventory.fetch_vm_facts(session, ref)
    assert vcsim_faults.counters()["soap_by_method"] == {"CreatePropertyCollector": 1, "RetrievePropertiesEx": 2}
    assert len(session._collectors) == 1  # the calls went to it: a collector of another session would be refused


@pytest.mark.live
def test_stock_vcsim_answers_read_as_pyvmomi_reads_them(stock_vcsim, stock_si, stock_make_vm):
    made = [stock_make_vm(cdrom="sata", cdrom_iso="[LocalDS_0] a.iso"), stock_make_vm(extra_config={"k": "v"})]
    set_extra_config(stock_si, made[1], {"k": "w"})  # stock appends the key again
    with Session(settings_for(stock_vcsim)) as session:
        refs = refs_of(session, [*made, find_vm(stock_si, "DC0_H0_VM0")])
        xml = inventory.fetch_many_vm_facts(session, refs)
        assert_same_facts(xml, pyvmomi_facts_page(session, refs))
        assert xml[refs[1]._moId].extra_config["k"] == "w"


# ---- generated answers ---------------------------------------------------------------------------------------

STUB = SoapAdapter.SoapStubAdapter(host="localhost", version=VERSION)
# text vSphere may send (XML 1.0 characters), and the edge cases the reading must keep apart ("" is not None)
text = st.sampled_from(["", " ", "[LocalDS_0] a <&> 'b' \"c\".iso", "\u00e9\u4e2d\n"]) | st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n"), max_size=12
)
opt_int = st.none() | st.integers(-5, 40000)


@st.composite
def devices(draw: Any) -> list[Any]:
    out = []
    for i in range(draw(st.integers(0, 10))):
        key = draw(st.integers(0, 20000)) * 10 + i  # unique
        kind = draw(st.sampled_from(["ide", "ahci", "scsi", "cdrom", "nic", "e1000", "disk", "usb"]))
        common: dict[str, Any] = {"key": key, "controllerKey": draw(opt_int), "unitNumber": draw(opt_int)}
        if draw(st.booleans()):
            common["deviceInfo"] = vim.Description(label=draw(text), summary=draw(text))
        if draw(st.booleans()):
            common["connectable"] = dev.VirtualDevice.ConnectInfo(
                connected=draw(st.booleans()), startConnected=draw(st.booleans()), allowGuestControl=draw(st.booleans())
            )
        if kind == "ide":
            out.append(dev.VirtualIDEController(busNumber=draw(st.integers(0, 1)), **common))
        elif kind == "ahci":
            out.append(dev.VirtualAHCIController(busNumber=draw(st.integers(0, 3)), **common))
        elif kind == "scsi":
            out.append(
                dev.ParaVirtualSCSIController(busNumber=draw(st.integers(0, 3)), sharedBus="noSharing", **common)
            )
        elif kind == "usb":
            out.append(dev.VirtualUSBController(busNumber=0, **common))
        elif kind == "cdrom":
            backing = draw(st.sampled_from([None, "iso", "passthrough", "atapi"]))
            made = {
                None: None,
                "iso": dev.VirtualCdrom.IsoBackingInfo(fileName=draw(text)),
                "passthrough": dev.VirtualCdrom.RemotePassthroughBackingInfo(deviceName=draw(text), exclusive=False),
                "atapi": dev.VirtualCdrom.AtapiBackingInfo(deviceName=draw(text)),
            }[backing]
            out.append(dev.VirtualCdrom(backing=made, **common))
        elif kind in ("nic", "e1000"):
            cls = dev.VirtualVmxnet3 if kind == "nic" else dev.VirtualE1000
            out.append(cls(macAddress=draw(st.none() | text), **common))
        else:
            out.append(dev.VirtualDisk(capacityInKB=draw(st.integers(0, 2**40)), **common))
    return out


option_values = st.lists(
    st.builds(
        vim.option.OptionValue, key=text, value=st.none() | text | st.integers(-(2**31), 2**31 - 1) | st.booleans()
    ),
    max_size=8,
)


def answer_returnval(props: list[Any], missing: list[Any]) -> bytes:
    vm = vim.VirtualMachine("vm-1", STUB)
    result = PC.RetrieveResult(objects=[PC.ObjectContent(obj=vm, propSet=props, missingSet=missing)])
    info = VmomiSupport.Object(name="returnval", type=PC.RetrieveResult, version=VERSION, flags=0)
    return SoapAdapter.Serialize(result, info, VERSION, {"urn:vim25": ""})


def answer(props: list[Any], missing: list[Any], returnval: bytes | None = None) -> bytes:
    """An answer as vSphere writes it, by pyVmomi's serializer."""
    returnval = returnval if returnval is not None else answer_returnval(props, missing)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        b'envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
        b'instance"><soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25">'
        + returnval
        + b"</RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>"
    )


def both_readings(body: bytes) -> tuple[Any, Any]:
    page = Reader(STUB).page(body)
    info = PC._GetMethodInfo("RetrievePropertiesEx")
    return page, SoapAdapter.SoapResponseDeserializer(STUB).Deserialize(body, info.result)


@settings(max_examples=150, deadline=None)
@given(
    devices(),
    option_values,
    text,
    st.sampled_from(["poweredOn", "poweredOff", "suspended"]),
    st.booleans(),
)
def test_generated_answers_read_as_pyvmomi_reads_them(raw, options, name, power, missing):
    props = [
        vmodl.DynamicProperty(name="name", val=name),
        vmodl.DynamicProperty(name="config.hardware.device", val=dev.VirtualDevice.Array(raw)),
        vmodl.DynamicProperty(name="config.extraConfig", val=vim.option.OptionValue.Array(options)),
        vmodl.DynamicProperty(name="runtime.powerState", val=vim.VirtualMachine.PowerState(power)),
        vmodl.DynamicProperty(name="runtime.host", val=vim.HostSystem("host-1", STUB)),
        vmodl.DynamicProperty(name="datastore", val=vim.Datastore.Array([vim.Datastore("datastore-1", STUB)])),
        vmodl.DynamicProperty(name="summary.freeSpace", val=VmomiSupport.long(2**40)),
    ]
    lost = [PC.MissingProperty(path="config.uuid", fault=vim.fault.NotAuthenticated())] if missing else []
    page, reference = both_readings(answer(props, lost))
    found, want = page.objects[0], reference.objects[0]
    assert found.obj == want.obj
    values = {n: inventory._fact(page.reader, n, v) for n, v in found.props.items()}
    wanted = {p.name: p.val for p in want.propSet}
    got_devices, as_given = values.pop("config.hardware.device")
    want_devices = wanted.pop("config.hardware.device")
    assert got_devices == read_devices(want_devices)
    for key, device in raw_by_key(want_devices).items():
        if isinstance(device, dev.VirtualCdrom):
            assert same_objects(as_given[key], device)
    assert values.pop("config.extraConfig") == extra_config_dict(wanted.pop("config.extraConfig"))
    assert values.keys() == wanted.keys()
    for key, value in wanted.items():
        got = values[key]
        assert type(got) is type(value) or (isinstance(value, list) and list(got) == list(value)), key
        assert got == value or same_objects(got, value), key
    assert [type(m.fault) for m in found.missingSet] == [type(m.fault) for m in want.missingSet or []]


faults = st.sampled_from(
    [
        vim.fault.GenericVmConfigFault(reason="msg.cdromdisconnect.locked"),
        vim.fault.TaskInProgress(task=vim.Task("task-7", STUB)),
        vim.fault.InvalidState(),
        vim.fault.NotAuthenticated(object=vim.Task("task-1", STUB), privilegeId="System.View"),
        vmodl.fault.SystemError(reason="boom <&>"),
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["queued", "running", "success", "error"]), st.none() | faults, text, st.booleans())
def test_generated_task_states_read_as_pyvmomi_reads_them(state, fault, message, asked):
    """What the task poller reads (tasks.read_task_states): a task's state, error and result, a VM's question."""
    error = vmodl.LocalizedMethodFault(fault=fault, localizedMessage=message) if fault is not None else None
    task = PC.ObjectContent(
        obj=vim.Task("task-1", STUB),
        propSet=[
            vmodl.DynamicProperty(name="info.state", val=vim.TaskInfo.State(state)),
            *([vmodl.DynamicProperty(name="info.error", val=error)] if error is not None else []),
            vmodl.DynamicProperty(name="info.result", val=vim.VirtualMachine("vm-3", STUB)),
        ],
    )
    choice = vim.option.ChoiceOption(
        choiceInfo=[vim.ElementDescription(key="0", label="button.yes", summary="Yes")], defaultIndex=0
    )
    question = vim.vm.QuestionInfo(
        id="q1", text=message, choice=choice, message=[vim.vm.Message(id="msg.x", text=message)]
    )
    vm = PC.ObjectContent(
        obj=vim.VirtualMachine("vm-1", STUB),
        propSet=[vmodl.DynamicProperty(name="runtime.question", val=question)] if asked else [],
    )
    info = VmomiSupport.Object(name="returnval", type=PC.RetrieveResult, version=VERSION, flags=0)
    returnval = SoapAdapter.Serialize(PC.RetrieveResult(objects=[task, vm]), info, VERSION, {"urn:vim25": ""})
    body = answer([], [], returnval)
    page, reference = both_readings(body)
    for found, want in zip(page.objects, reference.objects, strict=True):
        assert found.obj == want.obj
        wanted = {p.name: p.val for p in want.propSet or []}
        assert found.props.keys() == wanted.keys()
        for name, value in wanted.items():
            got = page.reader.value(found.props[name])
            assert type(got) is type(value) and (got == value or same_objects(got, value)), name
            if isinstance(value, BaseException):
                assert got.msg == value.msg  # what the tool says when the task failed

"""audit's decisions (drive/audit.py) over plain values: each state from a drive a real attach made on the
recording stand-in and then changed behind its back, the orphan rule case by case, and --fix through live and
dry-run effects (the same steps). Against vSphere: tests/test_audit_live.py."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from drive_fake import DS, OTHER_DS, FakeVsphereVm

from esxi_configdrive import VmData
from esxi_configdrive.drive.attach import AttachRequest, attach
from esxi_configdrive.drive.attempts import run_attempts
from esxi_configdrive.drive.audit import audit
from esxi_configdrive.drive.audit_judge import (
    DELETE,
    DELETE_FOLDER,
    DETACHED,
    DEVICE_REMOVED,
    DISCONNECTED,
    FOREIGN_CHANGE,
    INHERITED,
    MISSING_FILE,
    NOT_SHARED,
    OK,
    ORPHAN,
    REATTACH,
    RECONNECT,
    UNCHECKED,
    AuditRequest,
    judge,
)
from esxi_configdrive.drive.detach import detach
from esxi_configdrive.drive.effects import DryRunEffects, Effects, LiveEffects
from esxi_configdrive.drive.policy import Policy
from esxi_configdrive.record import PREFIX
from esxi_configdrive.vsphere_values import DatastorePath, DriveFolder, DriveListing, FileEntry, Fleet

POLICY = Policy()
NOW = 1_700_000_000.0
OLD = NOW - 2 * 86400  # older than ORPHAN_MIN_AGE
YOUNG = NOW - 60


def vmdata(vm_id: str) -> VmData:
    return VmData.from_dict({"metadata": {"vm-id": vm_id}, "userdata": "#cloud-config\n"})


@dataclass
class FleetVm(FakeVsphereVm):
    """The stand-in VM with a managed object id, as a fleet's VMs have."""

    _moId: str = "vm-1"


@dataclass
class FakeFleet:
    """``FleetAccess`` over stand-in VMs sharing one set of datastore files. Every file is old unless ``mtimes``
    says otherwise; ``before_read`` runs before each read after the first (a change made between reads)."""

    vms: list[FleetVm] = field(default_factory=list)
    store: dict[str, bytes] = field(default_factory=dict)  # the datastores' files, shared by the VMs
    folders: set[str] = field(default_factory=set)
    mtimes: dict[str, float] = field(default_factory=dict)
    sees: dict[str, frozenset[str]] = field(default_factory=lambda: {"host-1": frozenset({DS, OTHER_DS})})
    clusters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    complete: bool = True
    reads: int = 0
    before_read: Any = None

    def add(self, name: str, attached: bool = True, **kw: Any) -> FleetVm:
        number = len(self.vms) + 1
        vm = FleetVm(name=name, _moId=f"vm-{number}", instance_uuid=f"5001aaaa-0000-4000-8000-{number:012d}",
                     files=self.store, folders=self.folders, datastores=(DS, OTHER_DS), **kw)  # fmt: skip
        if attached:
            request = AttachRequest(vmdata(f"5d7e9c10-1b2a-4c3d-8e4f-{number:012d}"))
            run_attempts(lambda e: attach(vm, e, request, POLICY), lambda: LiveEffects(vm), 5)
            vm.log.clear()
        self.vms.append(vm)
        return vm

    def read(self, plan: Any = None) -> list[Fleet]:  # searches both datastores, as a whole datacenter
        if self.reads and self.before_read is not None:
            self.before_read(self)
        self.reads += 1
        return [
            Fleet(
                datacenter="DC0",
                vms=tuple(vm.facts() for vm in self.vms),
                vm_names={vm._moId: vm.name for vm in self.vms},
                complete=self.complete,
                listings={ds: self.listing(ds) for ds in (DS, OTHER_DS)},
                sees=self.sees,
                clusters=self.clusters,
                host_names={h: h for h in self.sees},
                now=NOW,
            )
        ]

    def listing(self, ds: str) -> DriveListing:
        if ds in self.problems:
            return DriveListing(ds, problem=self.problems[ds])
        root = f"[{ds}] ConfigDrive"
        folders = {}
        for folder in sorted(f for f in self.folders if f.startswith(root + "/")):
            rel = folder[len(root) + 1 :]
            if "/" in rel:
                continue
            entries = [(p, c) for p, c in self.store.items() if p.rsplit("/", 1)[0] == folder]
            files = tuple(FileEntry(p.rsplit("/", 1)[1], len(c), self.mtimes.get(p, OLD)) for p, c in entries)
            sub = tuple(sorted(f.rsplit("/", 1)[1] for f in self.folders if f.rsplit("/", 1)[0] == folder))
            path = DatastorePath(ds, f"ConfigDrive/{rel}")
            folders[path.path] = DriveFolder(path, files, sub, self.mtimes.get(folder, OLD))
        loose = tuple(FileEntry(p.rsplit("/", 1)[1], len(c), OLD) for p, c in self.store.items()
                      if p.rsplit("/", 1)[0] == root)  # fmt: skip
        return DriveListing(ds, folders, loose)

    def vm(self, facts: Any) -> FleetVm:
        return facts.ref

    def files(self, fleet: Fleet) -> FleetVm:
        return FleetVm(files=self.store, folders=self.folders)


def fleet_with(*names: str, **kw: Any) -> FakeFleet:
    fleet = FakeFleet(**kw)
    for name in names:
        fleet.add(name)
    return fleet


def rows(fake: FakeFleet, digests: dict[str, str] | None = None) -> dict[str, Any]:
    """The findings by VM name (orphans by path)."""
    found = judge(fake.read()[0], digests)
    return {(f.path if f.state == ORPHAN else f.vm): f for f in found}


def iso_of(vm: FleetVm) -> str:
    return vm.extra_config[PREFIX + "iso"]


# ---- the states ---------------------------------------------------------------------------------------------------


def test_a_drive_as_attach_left_it_is_ok_and_needs_nothing() -> None:
    fake = fleet_with("web-1")
    (row,) = judge(fake.read()[0])
    assert (row.state, row.attention, row.fix, row.vm, row.vm_id) == (OK, False, "", "web-1", "vm-1")
    assert row.path == iso_of(fake.vms[0]) and row.size == len(fake.store[row.path])


def test_each_change_behind_the_tools_back_has_its_state() -> None:
    fake = fleet_with("removed", "missing", "bigger", "same-size", "disconnected", "clone", "stopped", "plain")
    removed, missing, bigger, same, disconnected, clone, stopped, _ = fake.vms
    removed.cdroms = [c for c in removed.cdroms if c.iso is None]  # Terraform removed the CD-ROM
    del fake.store[iso_of(missing)]
    fake.store[iso_of(bigger)] += b"\0" * 2048
    fake.store[iso_of(same)] = bytes(len(fake.store[iso_of(same)]))
    disconnected.cdroms = [c if c.iso is None else type(c)(**{**vars(c), "start_connected": False})
                           for c in disconnected.cdroms]  # fmt: skip
    clone.instance_uuid = "5001bbbb-0000-4000-8000-000000000099"  # a clone: its record names its parent
    run_attempts(lambda e: detach(stopped, e, POLICY), lambda: LiveEffects(stopped), 5)
    found = rows(fake)
    states = {name: found[name].state for name in ("removed", "missing", "bigger", "same-size", "disconnected",
                                                   "clone", "stopped", "plain")}  # fmt: skip
    assert states == {
        "removed": DEVICE_REMOVED, "missing": MISSING_FILE, "bigger": FOREIGN_CHANGE, "same-size": OK,
        "disconnected": DISCONNECTED, "clone": INHERITED, "stopped": DETACHED, "plain": OK,
    }  # fmt: skip
    assert found["removed"].fix == REATTACH and found["disconnected"].fix == RECONNECT
    assert not any(found[n].fix for n in ("missing", "bigger", "clone", "stopped"))
    assert found["stopped"].attention is False and found["missing"].attention is True
    # the same size but other bytes: only the downloaded SHA-256 tells
    digest = {same._moId: hashlib.sha256(fake.store[iso_of(same)]).hexdigest()}
    assert rows(fake, digest)["same-size"].state == FOREIGN_CHANGE


def test_an_emptied_drive_the_record_knows_by_key_is_detached_and_needs_attention() -> None:
    fake = fleet_with("web-1")
    vm = fake.vms[0]
    ours = vm.our_cdrom()
    vm.extra_config[PREFIX + "device"] = str(ours.key)  # an update records the device key
    vm.cdroms = [c if c.key != ours.key else type(c)(**{**vars(c), "iso": None, "connected": False}) for c in vm.cdroms]
    row = rows(fake)["web-1"]
    assert (row.state, row.attention, row.fix) == (DETACHED, True, RECONNECT)


def test_a_record_without_size_is_judged_by_sectors_and_says_verify() -> None:
    fake = fleet_with("old", "odd")
    for vm in fake.vms:
        del vm.extra_config[PREFIX + "size"]  # as an earlier version wrote it
    fake.store[iso_of(fake.vms[1])] = b"x" * 1000
    found = rows(fake)
    assert found["old"].state == OK and any("--verify" in n for n in found["old"].notes)
    assert found["odd"].state == FOREIGN_CHANGE


def test_not_shared_comes_from_each_cluster_hosts_own_list() -> None:
    fake = fleet_with("web-1", clusters={"host-1": ("host-1", "host-2")})
    fake.sees = {"host-1": frozenset({DS}), "host-2": frozenset({OTHER_DS})}
    row = rows(fake)["web-1"]
    assert row.state == NOT_SHARED and "host-2" in row.notes[0] and "host-1" not in row.notes[0]
    fake.sees = {"host-1": frozenset({DS}), "host-2": frozenset({DS, OTHER_DS})}
    assert rows(fake)["web-1"].state == OK
    fake.clusters = {}  # a standalone host: nothing to move to
    fake.sees = {"host-1": frozenset({DS})}
    assert rows(fake)["web-1"].state == OK


def test_a_datastore_that_cannot_be_searched_is_unchecked_not_ok() -> None:
    fake = fleet_with("web-1", problems={DS: f"datastore {DS} is not accessible"})
    found = judge(fake.read()[0])
    assert [f.state for f in found] == [UNCHECKED, UNCHECKED]  # the VM's drive, and the datastore itself
    assert all(f.attention for f in found)


# ---- orphans ------------------------------------------------------------------------------------------------------


def orphan_case(**kw: Any) -> tuple[FakeFleet, str]:
    """A VM with a drive, and the folder of a VM deleted since (its ISO left behind)."""
    fake = fleet_with("web-1", **kw)
    gone = f"[{DS}] ConfigDrive/gone"
    fake.folders.add(gone)
    fake.store[f"{gone}/configdrive.iso"] = b"i" * 4096
    return fake, gone


def test_a_deleted_vms_old_folder_is_an_orphan_folder_fix_may_delete() -> None:
    fake, gone = orphan_case()
    row = rows(fake)[f"{gone}/"]
    assert (row.state, row.fix, row.vm, row.size) == (ORPHAN, DELETE_FOLDER, "", 4096)


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda f, g: f.mtimes.update({f"{g}/configdrive.iso": YOUNG}), "a run may be attaching it"),
        (lambda f, g: f.mtimes.update({g: YOUNG}), "a run may be attaching it"),
        (lambda f, g: f.store.update({f"{g}/notes.txt": b"x"}), "files this tool does not write"),
        (lambda f, g: f.folders.add(f"{g}/sub"), "subfolders"),
    ],
    ids=["young file", "young folder", "a foreign file", "a subfolder"],
)
def test_an_orphan_folder_is_left_when_the_rule_says_so(change: Any, reason: str) -> None:
    fake, gone = orphan_case()
    change(fake, gone)
    row = rows(fake)[f"{gone}/"]
    assert row.state == ORPHAN and row.fix == "" and any(reason in n for n in row.notes)


def test_a_folder_a_vm_is_named_after_keeps_its_place_and_loses_only_old_isos_of_ours() -> None:
    fake = fleet_with("web-1")
    folder = f"[{DS}] ConfigDrive/web-1"
    stray, foreign, young = (f"{folder}/configdrive-0123456789ab.iso", f"{folder}/theirs.iso",
                             f"{folder}/configdrive-ba9876543210.iso")  # fmt: skip
    fake.store.update({stray: b"s" * 2048, foreign: b"f" * 2048, young: b"y" * 2048})
    fake.mtimes[young] = YOUNG
    found = rows(fake)
    assert found["web-1"].state == OK  # the VM's own drive in the same folder
    assert (found[stray].fix, found[stray].vm) == (DELETE, "web-1")
    assert found[foreign].fix == "" and found[young].fix == ""
    assert f"{folder}/" not in found  # the folder itself is not an orphan


def test_same_named_vms_folder_and_a_vm_without_a_drive() -> None:
    """A VM named like a deleted one: its folder is the new VM's place (the next attach writes there)."""
    fake, gone = orphan_case()
    fake.add("gone", attached=False)
    found = rows(fake)
    row = found[f"{gone}/configdrive.iso"]
    assert (row.fix, row.vm) == (DELETE, "gone") and f"{gone}/" not in found
    del fake.store[f"{gone}/configdrive.iso"]
    assert not [f for f in judge(fake.read()[0]) if f.state == ORPHAN]  # an empty folder of a VM's name: nothing


def test_files_right_in_configdrive_and_partial_reads_never_make_deletable_orphans() -> None:
    fake, _gone = orphan_case()
    fake.store[f"[{DS}] ConfigDrive/configdrive.iso"] = b"l" * 2048
    loose = rows(fake)[f"[{DS}] ConfigDrive/configdrive.iso"]
    assert loose.state == ORPHAN and loose.fix == ""
    fake.complete = False  # --folder, or VMs that came or went during the read
    assert not [f for f in judge(fake.read()[0]) if f.state == ORPHAN]


def test_whatever_a_record_names_is_not_an_orphan() -> None:
    fake, gone = orphan_case()
    vm = fake.vms[0]
    vm.extra_config[PREFIX + "previous"] = f"{gone}/configdrive.iso"  # an interrupted swap: the next run deletes it
    assert not [f for f in judge(fake.read()[0]) if f.state == ORPHAN]


# ---- --fix --------------------------------------------------------------------------------------------------------


def broken_fleet() -> FakeFleet:
    fake, _gone = orphan_case()
    fake.add("removed")
    removed = fake.vms[-1]
    removed.cdroms = [c for c in removed.cdroms if c.iso is None]
    fake.add("missing")
    del fake.store[iso_of(fake.vms[-1])]
    return fake


def run_audit(fake: FakeFleet, fix: bool = False, dry_run: bool = False) -> Any:
    effects: type[Effects] = DryRunEffects if dry_run else LiveEffects
    return audit(fake, AuditRequest(fix=fix), POLICY, effects)


def test_fix_dry_run_lists_exactly_what_fix_then_does() -> None:
    dry_fake, live_fake = broken_fleet(), broken_fleet()
    dry = run_audit(dry_fake, fix=True, dry_run=True)
    live = run_audit(live_fake, fix=True)

    def steps(report: Any) -> list[tuple[str, str]]:
        return [(s.kind.value, s.target) for r in report.fixes.values() for s in r.steps]

    assert steps(dry) == steps(live) and steps(live)
    assert dry_fake.store.keys() == broken_fleet().store.keys()  # the dry run changed nothing
    assert dry.exit_status == 1 and live.exit_status == 1  # the missing file is left for attach --vmdata
    assert [f.state for i, f in enumerate(live.findings) if i in live.needs_attention] == [MISSING_FILE]


def test_fix_reattaches_through_attachs_planning_and_a_second_audit_is_clean() -> None:
    fake = broken_fleet()
    report = run_audit(fake, fix=True)
    removed = next(vm for vm in fake.vms if vm.name == "removed")
    (change,), extra = removed.calls("reconfigure")[0][1]
    assert change.iso == removed.extra_config[PREFIX + "iso"] and change.kind == "ide"  # off: IDE, as attach
    assert PREFIX + "device" not in extra or extra[PREFIX + "device"] == ""  # the record goes in the same call
    assert not any(p.startswith(f"[{DS}] ConfigDrive/gone") for p in fake.store | dict.fromkeys(fake.folders))
    assert fake.reads == 2  # read again before deleting (rule 5)
    missing = next(vm for vm in fake.vms if vm.name == "missing")  # what --fix cannot mend, the admin removes
    run_attempts(lambda e: detach(missing, e, POLICY, remove=True), lambda: LiveEffects(missing), 5)
    again = run_audit(fake)
    assert [f.state for f in again.findings] == [OK, OK, DETACHED] and again.exit_status == 0
    assert report.resolved(next(i for i, f in enumerate(report.findings) if f.vm == "removed"))


def test_an_orphan_that_changes_between_the_reads_is_left_alone() -> None:
    fake, gone = orphan_case()
    fake.before_read = lambda f: f.mtimes.update({f"{gone}/configdrive.iso": NOW})  # uploaded again meanwhile
    report = run_audit(fake, fix=True)
    (result,) = report.fixes.values()
    assert not result.changed and "no longer an orphan" in result.actions[0]
    assert f"{gone}/configdrive.iso" in fake.store


def test_fix_gives_back_only_the_recorded_file() -> None:
    """Same size, other bytes: the search cannot tell, so the repair downloads the file and refuses."""
    fake = fleet_with("web-1")
    vm = fake.vms[0]
    vm.cdroms = [c for c in vm.cdroms if c.iso is None]
    fake.store[iso_of(vm)] = bytes(len(fake.store[iso_of(vm)]))
    report = run_audit(fake, fix=True)
    (result,) = report.fixes.values()
    assert not result.changed and "not the recorded file" in result.actions[0]
    assert vm.calls("reconfigure") == [] and report.exit_status == 1

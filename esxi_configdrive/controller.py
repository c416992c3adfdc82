"""The operations: attach, update, reset-password, detach (stop), remove (expunge), prepare-migration, status.

Each operation reads the VM once, plans from what it read, and applies the plan in an order that keeps the VM
safe: a new ISO is uploaded before any device points at it, a device stops pointing at an ISO before the ISO is
deleted, and the extraConfig record changes in the same ReconfigVM as the device. Every ReconfigVM carries the
VM's ``changeVersion``; when another client changed the VM meanwhile vSphere answers ConcurrentAccess and the
operation starts again from a fresh read, so two runs at once cannot add two drives or lose an update.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyVmomi import vim, vmodl

from .errors import ConfigDriveError, LockedDoor, NotFound, OutcomeUnknown
from .iso import MAX_ISO_BYTES, read_iso, tree_to_iso
from .layout import FileTree, build_tree, network_data_for_macs
from .record import AVOID_LOCK_QUESTION_OPTIONS, LOCKED_DOOR_MESSAGE_IDS, DriveRecord
from .vmdata import DEFAULT_MAX_USERDATA_BYTES, ValidationError, VmData
from .vsphere import devices as dev
from .vsphere.connection import Session
from .vsphere.datastore import DatastoreFiles, DatastorePath, safe_path_component
from .vsphere.inventory import (
    DatastoreInfo,
    VmFacts,
    check_datastore_name,
    fetch_vm_facts,
    find_host,
    find_vm,
    pick_datastore,
)
from .vsphere.tasks import DEFAULT_TIMEOUT, TaskTimeout, choice_key, question_message_ids, wait_for_task

log = logging.getLogger(__name__)
T = TypeVar("T")

DRIVE_ROOT = "ConfigDrive"
ADMIN_PASS_CHOICES = ("auto", "yes", "no")
FIRST_ISO_NAME = "configdrive.iso"
VmRef = "str | vim.VirtualMachine"


@dataclass
class Result:
    """What an operation did (or, with dry_run, would do)."""

    vm: str
    changed: bool
    actions: list[str] = field(default_factory=list)
    dry_run: bool = False
    iso: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vm": self.vm, "changed": self.changed}
        if self.dry_run:
            out["dry_run"] = True
        out["actions"] = list(self.actions)
        if self.iso is not None:
            out["iso"] = self.iso
        out.update(self.extra)
        return out


def drive_folder(datastore: str, facts: VmFacts) -> DatastorePath:
    """``[ds] ConfigDrive/<vm name made safe>``."""
    return DatastorePath(datastore, f"{DRIVE_ROOT}/{safe_path_component(facts.name, facts.ref._moId)}")


def attach_name(digest: str, change_version: str | None) -> str:
    """The ISO name of an attach into an existing folder: the content, and the VM version it was planned on. A
    re-run after a crash (nothing changed the VM) writes the same name again; any other run writes another."""
    version = hashlib.sha256((change_version or "").encode()).hexdigest()[:6]
    return f"configdrive-{digest[:12]}-{version}.iso"


def generate_password(length: int = 20) -> str:
    """A random password with upper- and lower-case letters and digits (no symbols: they break some guest
    tools and keyboards), from the OS's CSPRNG."""
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.islower() for c in pw) and any(c.isupper() for c in pw) and any(c.isdigit() for c in pw):
            return pw


class ConfigDriveController:
    """Config drives on the VMs of one vSphere session.

    ``force_eject`` answers the guest's locked-door question with yes (the guest loses its mounted drive);
    otherwise it is answered no, the operation fails and the VM keeps its old drive. ``avoid_lock_question``
    sets the VM options that make ESXi not ask (effective from the VM's next power-on).
    """

    def __init__(
        self,
        session: Session,
        *,
        force_eject: bool = False,
        avoid_lock_question: bool = False,
        task_timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = 5,
        datacenter: str | None = None,
        admin_pass: str = "auto",
        max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES,
    ) -> None:
        if admin_pass not in ADMIN_PASS_CHOICES:
            raise ValidationError("admin-pass", f"must be one of {', '.join(ADMIN_PASS_CHOICES)}")
        self.session = session
        self.admin_pass = admin_pass
        self.max_userdata_bytes = max_userdata_bytes
        self.force_eject = force_eject
        self.avoid_lock_question = avoid_lock_question
        self.task_timeout = task_timeout
        self.max_attempts = max_attempts
        self.datacenter = datacenter or session.settings.datacenter
        self._local = threading.local()  # per-thread state of the operation running (batch mode shares us)

    # ---- the operations ------------------------------------------------------------------------------------

    def attach(
        self,
        vm: VmRef,
        data: VmData,
        *,
        datastore: str | None = None,
        controller: str = "auto",
        network_data_auto: bool = False,
        dry_run: bool = False,
    ) -> Result:
        """Give the VM a config drive holding ``data`` on a second CD-ROM; idempotent (same data: no change)."""
        tree_to_iso(self._tree(data))  # size and every field checked before vSphere is touched
        if controller not in dev.CONTROLLER_CHOICES:
            raise ValidationError("controller", f"must be one of {', '.join(dev.CONTROLLER_CHOICES)}")
        if datastore is not None:  # an explicit empty name is a mistake, not "the default"
            check_datastore_name(datastore)
        ref = self._resolve(vm)
        return self._optimistic(lambda: self._attach_once(ref, data, datastore, controller, network_data_auto, dry_run))

    def update(
        self,
        vm: VmRef,
        *,
        data: VmData | None = None,
        overrides: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        network_data_auto: bool = False,
        dry_run: bool = False,
    ) -> Result:
        """Change the drive's content: download it, apply ``data`` (whole) and/or ``overrides`` (fields:
        userdata, password, public_keys, hostname), upload under a new name, swap the backing, delete the old."""
        if data is not None:
            data.validate(self.max_userdata_bytes)
        ref = self._resolve(vm)
        return self._optimistic(
            lambda: self._update_once(ref, data, overrides or {}, options or {}, network_data_auto, dry_run)
        )

    def reset_password(self, vm: VmRef, *, length: int = 20, dry_run: bool = False) -> Result:
        """Put a new random password on the drive; the result carries it (``extra["password"]``), once."""
        password = generate_password(length)
        result = self.update(vm, overrides={"password": password}, dry_run=dry_run)
        if not dry_run:
            result.extra["password"] = password
        return result

    def detach(self, vm: VmRef, *, dry_run: bool = False) -> Result:
        """VM stopped: disconnect the drive (remove it when the VM is off), then delete its ISO (the empty folder
        stays: a start may be attaching into it right now)."""
        ref = self._resolve(vm)
        return self._optimistic(lambda: self._detach_once(ref, remove=False, dry_run=dry_run))

    def remove(self, vm: VmRef, *, dry_run: bool = False) -> Result:
        """VM expunged: remove the device, then the ISO and its folder."""
        ref = self._resolve(vm)
        return self._optimistic(lambda: self._detach_once(ref, remove=True, dry_run=dry_run))

    def prepare_migration(
        self, vm: VmRef, host: str, *, datastore: str | None = None, migrate: bool = False, dry_run: bool = False
    ) -> Result:
        """Make sure ``host`` can see the ISO: copy it to a datastore the host mounts, repoint, delete the old."""
        if datastore is not None:
            check_datastore_name(datastore)
        ref = self._resolve(vm)
        result = self._optimistic(lambda: self._prepare_migration_once(ref, host, datastore, dry_run))
        if migrate and not dry_run:
            self._migrate(ref, host, result)
        elif migrate:
            result.actions.append(f"migrate the VM to host {host}")
        return result

    def status(self, vm: VmRef) -> Result:
        """The drive's device, backing, file and content, read-only."""
        ref = self._resolve(vm)
        return self._optimistic(lambda: self._status_once(ref))

    def _status_once(self, ref: vim.VirtualMachine) -> Result:
        facts = self._facts(ref)
        record = DriveRecord.from_extra_config(facts.extra_config)
        cdrom = dev.find_config_drive(facts.devices, record.iso, record.device_key)
        out: dict[str, Any] = {"power_state": facts.power_state, "attached": False, "device": None}
        if cdrom is not None:
            out["device"] = dev.describe_device(facts.devices, cdrom)
            out["attached"] = dev.iso_path_of(cdrom) is not None
        out["record"] = {k: v for k, v in vars(record).items() if v}
        path = dev.iso_path_of(cdrom) if cdrom is not None else None
        if path:
            out.update(self._inspect_file(facts, DatastorePath.parse(path), record))
            if not out["file_exists"]:
                self._raise_if_changed(facts)  # not missing: swapped by an update running now
        return Result(facts.name, False, iso=path, extra=out)

    # ---- attach --------------------------------------------------------------------------------------------

    def _attach_once(
        self,
        ref: vim.VirtualMachine,
        data: VmData,
        datastore: str | None,
        controller: str,
        network_data_auto: bool,
        dry_run: bool,
    ) -> Result:
        facts = self._facts(ref)
        data = self._for_guest(data, facts)
        if network_data_auto:
            data = self._with_nic_network_data(data, facts)
        record = DriveRecord.from_extra_config(facts.extra_config)
        cdrom = dev.find_config_drive(facts.devices, record.iso, record.device_key)
        if cdrom is not None:
            # A drive is there (maybe emptied by a detach): make it hold this data, reusing the device.
            result = self._swap_in(facts, record, cdrom, data, datastore, dry_run, verify_current=True)
            return self._with_warnings(result, data, facts)
        ds = self._datastore(facts, datastore)
        folder = drive_folder(ds.name, facts)
        target = DatastorePath(ds.name, f"{folder.path}/{FIRST_ISO_NAME}")
        try:
            plan = dev.plan_attach(facts.devices, str(target), facts.powered_on, controller)
        except dev.DevicePlanError as e:
            raise ValidationError("controller", str(e)) from None
        tree = self._tree(data)
        actions = [f"create folder {folder} if missing", f"upload the config drive to {target}", *plan.summary]
        if dry_run:
            return self._with_warnings(Result(facts.name, True, actions, dry_run=True, iso=str(target)), data, facts)
        files = self._files(facts)
        created = files.mkdir(folder)
        strays: list[DatastorePath] = []
        if not created:
            # The folder was there: left by a detach, an interrupted run, or a run going on right now. Never write
            # a name another run may be using or deleting: this one is unique to the VM's current version.
            strays = self._strays(files, folder, ds, data.vm_id)
            target = DatastorePath(ds.name, f"{folder.path}/{attach_name(tree.digest(), facts.change_version)}")
            plan = dev.plan_attach(facts.devices, str(target), facts.powered_on, controller)  # checked above
        iso = tree_to_iso(tree)
        sha = self._upload(files, target, iso)
        new_record = DriveRecord(
            iso=str(target), digest=tree.digest(), sha256=sha, owner=facts.instance_uuid, folder=str(folder)
        )
        self._reconfigure_or_clean_up(facts, plan, new_record, record, files, target)
        done = [f"uploaded {len(iso)} bytes to {target}", *plan.summary]
        done += self._delete_all(files, [s for s in strays if s != target])
        return self._with_warnings(Result(facts.name, True, done, iso=str(target), extra={"sha256": sha}), data, facts)

    # ---- update (and attach over an existing drive) --------------------------------------------------------

    def _update_once(
        self,
        ref: vim.VirtualMachine,
        data: VmData | None,
        overrides: dict[str, Any],
        options: dict[str, Any],
        network_data_auto: bool,
        dry_run: bool,
    ) -> Result:
        facts = self._facts(ref)
        record = DriveRecord.from_extra_config(facts.extra_config)
        cdrom = dev.find_config_drive(facts.devices, record.iso, record.device_key)
        current = dev.iso_path_of(cdrom) if cdrom is not None else None
        if cdrom is None or not current:
            raise ConfigDriveError(f"VM {facts.name} has no config drive attached; use attach --vmdata first")
        files = self._files(facts)
        try:
            current_iso = files.download(DatastorePath.parse(current), MAX_ISO_BYTES)
        except FileNotFoundError:
            self._raise_if_changed(facts)  # another client swapped the drive and deleted this file meanwhile
            raise ConfigDriveError(
                f"the ISO attached to VM {facts.name} ({current}) is missing; run attach --vmdata to rebuild it"
            ) from None
        try:
            now = read_iso(current_iso)
        except ValidationError as e:  # the datastore's file is input too: say which, and the way out
            reason = e.message if e.field == "iso" else str(e)
            raise ValidationError(
                "iso", f"{current} is not a readable config drive ({reason}); attach --vmdata rebuilds it"
            ) from None
        # --vmdata replaces the content; how the drive is laid out stays unless asked otherwise.
        base = (
            now
            if data is None
            else data.copy(
                label=now.label,
                password_vendor_data=now.password_vendor_data,
                dated_versions=now.dated_versions,
                empty_network_data=now.empty_network_data,
            )
        )
        for key, value in options.items():
            setattr(base, key, value)
        new = self._for_guest(base.with_overrides(**overrides, max_userdata_bytes=self.max_userdata_bytes), facts)
        if network_data_auto:
            new = self._with_nic_network_data(new, facts)
        result = self._swap_in(facts, record, cdrom, new, None, dry_run, verify_current=False)
        return self._with_warnings(result, new, facts)

    def _swap_in(
        self,
        facts: VmFacts,
        record: DriveRecord,
        cdrom: vim.vm.device.VirtualCdrom,
        data: VmData,
        datastore: str | None,
        dry_run: bool,
        verify_current: bool,
    ) -> Result:
        """Make ``cdrom`` hold ``data``: unchanged when it already does, else upload under a new name and
        repoint the device in one reconfigure (the update's detach + reattach), then delete the old file."""
        tree = self._tree(data)
        digest = tree.digest()
        current = dev.iso_path_of(cdrom)
        ours = record.owner == facts.instance_uuid
        files = self._files(facts)
        connected_ok = bool(cdrom.connectable and cdrom.connectable.startConnected) and (
            not facts.powered_on or bool(cdrom.connectable.connected)
        )
        # An explicit datastore other than the drive's: the drive moves there (and a wrong name is an error).
        moving = bool(datastore and current and DatastorePath.parse(current).datastore != datastore)
        same_content = ours and not moving and current is not None and current == record.iso and record.digest == digest
        if same_content and (not verify_current or self._intact(files, current, record)):
            actions = [] if dry_run else self._finish_pending(files, record, current, facts)
            if connected_ok:
                return Result(facts.name, bool(actions), actions, dry_run=dry_run, iso=current)
            target = DatastorePath.parse(current)  # only the connection state needs fixing
            iso = None
        else:
            ds = self._swap_datastore(facts, current, datastore)
            target = drive_folder(ds.name, facts)
            target = DatastorePath(ds.name, f"{target.path}/configdrive-{digest[:12]}.iso")
            iso = tree_to_iso(tree)
        plan = dev.plan_swap_backing(cdrom, str(target), facts.powered_on)
        old = DatastorePath.parse(current) if current and str(target) != current else None
        deletable_old = old if old is not None and self._is_ours(record, facts, old) else None
        actions = ([f"upload the config drive to {target}"] if iso is not None else []) + plan.summary
        if deletable_old:
            actions.append(f"delete {deletable_old}")
        if dry_run:
            return Result(facts.name, True, actions, dry_run=True, iso=str(target))
        sha = record.sha256
        done: list[str] = self._finish_pending(files, record, current or str(target), facts, keep=str(target))
        if iso is not None:
            if old is None or old.folder != target.folder or old.datastore != target.datastore:
                files.mkdir(target.folder)
            sha = self._upload(files, target, iso)
            done.append(f"uploaded {len(iso)} bytes to {target}")
        new_record = record.replace(
            iso=str(target),
            digest=digest,
            sha256=sha,
            owner=facts.instance_uuid,
            device=cdrom.key,
            previous=str(deletable_old) if deletable_old else "",
            folder=str(target.folder),
        )
        self._reconfigure_or_clean_up(facts, plan, new_record, record, files, target if iso is not None else None)
        done += plan.summary
        if deletable_old is not None:
            done += self._retire(files, facts, deletable_old, str(target))
        return Result(facts.name, True, done, iso=str(target), extra={"sha256": sha})

    # ---- detach / remove -----------------------------------------------------------------------------------

    def _detach_once(self, ref: vim.VirtualMachine, remove: bool, dry_run: bool) -> Result:
        facts = self._facts(ref)
        record = DriveRecord.from_extra_config(facts.extra_config)
        cdrom = dev.find_config_drive(facts.devices, record.iso, record.device_key)
        files = self._files(facts)
        actions: list[str] = []
        plan = dev.DevicePlan()
        # The file that stops being used: deleted after the reconfigure, and named in the record until then, so
        # a run interrupted in between is finished by the next (the same way as an update's old file).
        detached = (dev.iso_path_of(cdrom) if cdrom is not None else None) or record.iso or record.previous
        doomed = DatastorePath.parse(detached) if detached else None
        if doomed is not None and not self._is_ours(record, facts, doomed):
            doomed = None  # a clone's inherited drive: its file belongs to the parent
        new_record = DriveRecord(owner=record.owner, folder=record.folder, previous=str(doomed or ""))
        if cdrom is not None:
            removable = not facts.powered_on or (remove and dev.can_hot_remove(facts.devices, cdrom))
            if removable:
                plan = dev.plan_remove(cdrom)
            elif dev.iso_path_of(cdrom) or (cdrom.connectable and cdrom.connectable.connected):
                plan = dev.plan_clear_backing(cdrom)
                new_record = new_record.replace(device=cdrom.key)
            else:
                new_record = new_record.replace(device=cdrom.key)
            if remove and not removable:
                actions.append("the IDE CD-ROM of a running VM cannot be removed: emptied instead")
        # Deleted afterwards: the detached file, and one an interrupted update left. Never the folder on detach (a
        # start may be attaching into it right now); remove deletes it too, once nothing else is in it (another
        # VM of the same name may keep its drive there).
        previous = DatastorePath.parse(record.previous) if record.previous else None
        doomed_files = [
            p for p in dict.fromkeys([doomed, previous]) if p is not None and self._is_ours(record, facts, p)
        ]
        folder = self._own_folder(record, facts) if remove else None
        if dry_run:
            existing = [p for p in doomed_files if files.exists(p)]
            actions += plan.summary + [f"delete {p}" for p in existing]
            actions += [f"delete {folder} once empty"] if folder is not None else []
            changed = bool(plan) or new_record != record or bool(existing)
            return Result(facts.name, changed, actions, dry_run=True)
        changed = False
        if plan or new_record != record:
            self._reconfigure(facts, plan, new_record, record)
            actions += plan.summary or ["cleared the drive record"]
            changed = True
        deleted = self._delete_all(files, doomed_files)
        if folder is not None:
            deleted += self._delete_folder_if_empty(files, facts, folder)
        actions += deleted
        changed = changed or any(a.startswith("deleted") for a in deleted)
        return Result(facts.name, changed, actions)

    # ---- migration -----------------------------------------------------------------------------------------

    def _prepare_migration_once(
        self, ref: vim.VirtualMachine, host: str, datastore: str | None, dry_run: bool
    ) -> Result:
        facts = self._facts(ref)
        record = DriveRecord.from_extra_config(facts.extra_config)
        cdrom = dev.find_config_drive(facts.devices, record.iso, record.device_key)
        current = dev.iso_path_of(cdrom) if cdrom is not None else None
        host_ref, host_datastores = find_host(self.session, host)
        result = Result(facts.name, False, iso=current, extra={"host": host, "host_id": host_ref._moId})
        if not current:
            result.actions.append("the VM has no config drive attached: nothing to move")
            return result
        files = self._files(facts)
        source = DatastorePath.parse(current)
        visible = {d.name: d for d in host_datastores}
        if source.datastore in visible:
            result.actions = [] if dry_run else self._finish_pending(files, record, current, facts)
            result.changed = bool(result.actions)
            result.actions.append(f"host {host} already sees datastore {source.datastore}")
            return result
        target_ds = self._migration_datastore(facts, visible, datastore, host)
        # Named by content: a same-named VM's drive in the target folder has another name, or the same bytes.
        name = f"configdrive-{record.digest[:12]}.iso" if record.digest else source.name
        target = DatastorePath(target_ds.name, f"{drive_folder(target_ds.name, facts).path}/{name}")
        plan = dev.plan_swap_backing(cdrom, str(target), facts.powered_on)
        deletable = source if self._is_ours(record, facts, source) else None
        actions = [f"copy {source} to {target}", *plan.summary] + ([f"delete {source}"] if deletable else [])
        if dry_run:
            return Result(facts.name, True, actions, dry_run=True, iso=str(target), extra=result.extra)
        files.mkdir(target.folder)
        self._copy_once(files, source, target, record)
        new_record = record.replace(
            iso=str(target), device=cdrom.key, previous=str(deletable or ""), folder=str(target.folder)
        )
        self._reconfigure_or_clean_up(facts, plan, new_record, record, files, target)
        done = [f"copied {source} to {target}", *plan.summary]
        if deletable is not None:
            done += self._retire(files, facts, deletable, str(target))
        return Result(facts.name, True, done, iso=str(target), extra=result.extra)

    def _copy_once(self, files: DatastoreFiles, source: DatastorePath, target: DatastorePath, record: DriveRecord):
        """Copy without overwriting: a target already there is fine only when it is this drive (an interrupted
        run's copy); anything else there is not ours to replace."""
        try:
            files.copy(source, target)
        except vim.fault.FileAlreadyExists:
            existing = files.download(target, MAX_ISO_BYTES)
            if not record.sha256 or hashlib.sha256(existing).hexdigest() != record.sha256:
                raise ConfigDriveError(
                    f"{target} already exists and is not this VM's drive; pass another --datastore"
                ) from None

    def _migration_datastore(
        self, facts: VmFacts, visible: dict[str, DatastoreInfo], wanted: str | None, host: str
    ) -> DatastoreInfo:
        """The given datastore, else the VM's own (disk) datastore the host sees, else any the host mounts;
        for a running VM, one its current host sees too (the backing changes before the VM moves)."""
        current_host = facts.host._moId if facts.host is not None else None

        def usable(d: DatastoreInfo) -> bool:
            return d.accessible and (not facts.powered_on or not d.hosts or current_host in d.hosts)

        if wanted:
            if wanted not in visible:
                raise ValidationError("datastore", f"host {host} does not mount datastore {wanted!r}")
            if not usable(visible[wanted]):
                raise ValidationError("datastore", f"the VM's current host cannot reach {wanted!r}")
            return visible[wanted]
        own = [visible[n] for n in ([facts.vmx_datastore, *sorted(facts.datastores)]) if n in visible]
        for candidate in own + sorted(visible.values(), key=lambda d: d.name):
            if usable(candidate):
                return candidate
        raise ConfigDriveError(
            f"no datastore is mounted both by host {host} and by the VM's current host; pass --datastore"
        )

    def _migrate(self, ref: vim.VirtualMachine, host: str, result: Result) -> None:
        host_ref, _ = find_host(self.session, host)
        spec = vim.vm.RelocateSpec(host=host_ref)
        task = self.session.call(lambda: ref.RelocateVM_Task(spec), "RelocateVM")
        wait_for_task(self.session, task, what=f"migrate to {host}", timeout=self.task_timeout)
        result.actions.append(f"migrated the VM to host {host}")
        result.changed = True

    # ---- shared steps --------------------------------------------------------------------------------------

    def _tree(self, data: VmData) -> FileTree:
        return build_tree(data, max_userdata_bytes=self.max_userdata_bytes)

    def _for_guest(self, data: VmData, facts: VmFacts) -> VmData:
        """Decide meta_data.json's admin_pass: cloudbase-init (Windows) reads it; on other guests cloud-init would
        copy it into a world-readable file, so "auto" keeps it only for Windows (or a guest vSphere can't name)."""
        wanted = {"yes": True, "no": False}.get(self.admin_pass)
        if wanted is None:
            wanted = facts.is_windows is not False
        return data if data.admin_pass == wanted else data.copy(admin_pass=wanted)

    @staticmethod
    def _with_warnings(result: Result, data: VmData, facts: VmFacts) -> Result:
        if facts.bios_uuid and data.vm_id.lower() == facts.bios_uuid.lower():
            result.extra.setdefault("warnings", []).append(
                "vm-id equals the VM's BIOS UUID: cloud-init then trusts its cache and ignores later drive updates "
                "(hostname, password reset); give the drive its own vm-id (docs/guest-setup.md)"
            )
        return result

    def _resolve(self, vm: VmRef) -> vim.VirtualMachine:
        if isinstance(vm, vim.VirtualMachine):
            return vm
        return find_vm(self.session, vm, self.datacenter)

    def _facts(self, ref: vim.VirtualMachine) -> VmFacts:
        return fetch_vm_facts(self.session, ref)

    def _files(self, facts: VmFacts) -> DatastoreFiles:
        return DatastoreFiles(self.session, facts.datacenter, facts.datacenter_path, self.task_timeout)

    def _optimistic(self, attempt: Callable[[], T]) -> T:
        """Run an attempt; when vSphere reports ConcurrentAccess (changeVersion moved), read again and retry.

        An attempt that lost keeps its upload: the next one usually writes the same name again. When it does
        not (an update built on content another client changed meanwhile), the upload is deleted at the end,
        unless the VM uses it."""
        self._local.leftovers = leftovers = []
        try:
            for n in range(1, self.max_attempts + 1):
                try:
                    result = attempt()
                except vim.fault.ConcurrentAccess:
                    log.info("the VM changed while we planned (attempt %d); reading it again", n)
                    continue
                self._delete_leftovers(leftovers, keep=getattr(result, "iso", None))
                return result
        except OutcomeUnknown:
            raise  # a reconfigure may still be attaching one of the uploads: leave them to the re-run
        except Exception:
            self._delete_leftovers(leftovers, keep=None)
            raise
        self._delete_leftovers(leftovers, keep=None)
        raise ConfigDriveError(f"the VM kept changing under us; gave up after {self.max_attempts} attempts")

    def _raise_if_changed(self, facts: VmFacts) -> None:
        """A file the VM pointed at when read is gone: when the VM has changed since, that is a concurrent
        swap, not a missing file; ConcurrentAccess makes _optimistic read the VM again."""
        if self._facts(facts.ref).change_version != facts.change_version:
            raise vim.fault.ConcurrentAccess(msg=f"VM {facts.name} changed while it was read")

    def _delete_leftovers(self, leftovers: list[tuple[DatastoreFiles, Any, DatastorePath]], keep: str | None) -> None:
        by_path = {path: (files, ref) for files, ref, path in leftovers}  # attempts often wrote the same name
        for path, (files, ref) in by_path.items():
            if str(path) != keep:
                self._delete_if_unused(files, ref, path)

    def _upload(self, files: DatastoreFiles, target: DatastorePath, iso: bytes) -> str:
        """Upload into the drive's folder; when the folder vanished since it was made or seen (a detach running
        at the same time deleted it), make it again and upload once more."""
        try:
            return files.upload(target, iso)
        except FileNotFoundError:
            files.mkdir(target.folder)
            return files.upload(target, iso)

    def _datastore(self, facts: VmFacts, wanted: str | None) -> DatastoreInfo:
        wanted = wanted or self.session.settings.datastore
        if wanted and wanted not in facts.datastores:
            return self._datastore_by_name(facts, wanted)
        return pick_datastore(facts, wanted)

    def _datastore_by_name(self, facts: VmFacts, name: str) -> DatastoreInfo:
        """A datastore the VM does not use yet: it must be mounted by the VM's host."""
        from .vsphere.inventory import datastore_info, retrieve

        PC = vmodl.query.PropertyCollector
        spec = PC.FilterSpec(
            objectSet=[
                PC.ObjectSpec(
                    obj=facts.datacenter,
                    skip=True,
                    selectSet=[PC.TraversalSpec(type=vim.Datacenter, path="datastore", skip=False)],
                )
            ],
            propSet=[PC.PropertySpec(type=vim.Datastore, pathSet=["name", "summary.accessible", "host", "browser"])],
        )
        for obj, props in retrieve(self.session, spec):
            if props.get("name") == name:
                info = datastore_info(obj, props)
                if facts.host is not None and info.hosts and facts.host._moId not in info.hosts:
                    raise ValidationError("datastore", f"{name!r} is not mounted on the VM's host")
                return info
        raise NotFound(f"no datastore named {name!r} in the VM's datacenter")

    def _swap_datastore(self, facts: VmFacts, current: str | None, wanted: str | None) -> DatastoreInfo:
        """Where a replacement ISO goes: the asked datastore, else where the current one is, else the default."""
        if wanted:
            return self._datastore(facts, wanted)
        if current:
            name = DatastorePath.parse(current).datastore
            if name in facts.datastores:
                return facts.datastores[name]
        return self._datastore(facts, None)

    def _is_ours(self, record: DriveRecord, facts: VmFacts, path: DatastorePath) -> bool:
        """A file this tool may delete: made for this very VM (not inherited by a clone), in a folder of its own:
        the one its current name gives, or the one its record names (the VM may have been renamed since)."""
        if record.owner != facts.instance_uuid:
            return False
        folders = {drive_folder(path.datastore, facts).path}
        if record.folder:
            folders.add(DatastorePath.parse(record.folder).path)
        return path.folder.path in folders

    def _own_folder(self, record: DriveRecord, facts: VmFacts) -> DatastorePath | None:
        if not record.folder or record.owner != facts.instance_uuid:
            return None
        return DatastorePath.parse(record.folder)

    def _finish_pending(
        self, files: DatastoreFiles, record: DriveRecord, current: str, facts: VmFacts, keep: str = ""
    ) -> list[str]:
        """Delete the file a crashed run swapped out but did not get to delete (and its folder when the drive
        moved out of it, as the finished run would have)."""
        if not record.previous or record.previous in (current, keep):
            return []
        previous = DatastorePath.parse(record.previous)
        if not self._is_ours(record, facts, previous):
            return []
        if files.exists(previous):
            return [f"{a} (left by an interrupted run)" for a in self._retire(files, facts, previous, current)]
        if previous.folder != DatastorePath.parse(current).folder:
            return self._delete_folder_if_empty(files, facts, previous.folder)
        return []

    def _retire(self, files: DatastoreFiles, facts: VmFacts, old: DatastorePath, current: str | None) -> list[str]:
        """Delete a replaced ISO of ours; when the drive moved out of its folder, the folder too once empty."""
        done = self._delete_all(files, [old])
        if current is None or old.folder != DatastorePath.parse(current).folder:
            done += self._delete_folder_if_empty(files, facts, old.folder)
        return done

    def _delete_folder_if_empty(self, files: DatastoreFiles, facts: VmFacts, folder: DatastorePath) -> list[str]:
        """A folder is named after the VM, and another VM of the same name may keep its drive there: delete it
        only when nothing is left in it."""
        browser = self._browser(facts, folder.datastore)
        if browser is None:
            return []
        left = files.list(folder, browser, pattern="*")
        if left is None:
            return []
        if left:
            return [f"left {folder}: it still holds {', '.join(left)}"]
        return [f"deleted {folder}"] if files.delete(folder) else []

    def _browser(self, facts: VmFacts, datastore: str) -> Any:
        if datastore in facts.datastores:
            return facts.datastores[datastore].browser
        try:
            return self._datastore_by_name(facts, datastore).browser
        except (ValidationError, ConfigDriveError):
            return None

    def _intact(self, files: DatastoreFiles, current: str, record: DriveRecord) -> bool:
        """The attached file is there and is the one recorded: not deleted, truncated or overwritten behind our
        back (one GET, as many round trips as a HEAD)."""
        try:
            content = files.download(DatastorePath.parse(current), MAX_ISO_BYTES)
        except (FileNotFoundError, ValidationError):
            return False
        return hashlib.sha256(content).hexdigest() == record.sha256

    def _strays(
        self, files: DatastoreFiles, folder: DatastorePath, ds: DatastoreInfo, vm_id: str
    ) -> list[DatastorePath]:
        """ISOs already in the folder of a VM that has no drive: left by an interrupted run. A drive made for
        another vm-id means another VM shares the folder (same name): refuse rather than touch its file.

        Only attach looks: an update's leftovers have the name its re-run writes again (names follow the
        content, and the bytes are reproducible), detach deletes the file it detached, remove the whole folder."""
        if ds.browser is None:
            return []
        strays = []
        for name in files.list(folder, ds.browser) or []:
            path = DatastorePath(folder.datastore, f"{folder.path}/{name}")
            try:
                other = read_iso(files.download(path, MAX_ISO_BYTES))
            except (ValidationError, FileNotFoundError):
                strays.append(path)  # a partial or broken upload of ours
                continue
            if other.vm_id != vm_id:
                raise ConfigDriveError(
                    f"{path} holds the config drive of another VM (vm-id {other.vm_id}); two VMs named alike share "
                    f"{folder}. Remove that VM's drive, or give this one another --datastore"
                )
            strays.append(path)
        return strays

    def _delete_all(self, files: DatastoreFiles, paths: list[DatastorePath]) -> list[str]:
        return [f"deleted {p}" for p in paths if files.delete(p)]

    def _with_nic_network_data(self, data: VmData, facts: VmFacts) -> VmData:
        macs = [mac for _, mac in dev.nic_macs(facts.devices)]
        if not macs:
            raise ValidationError("network-data", f"VM {facts.name} has no network adapter to describe")
        new = data.copy(network_data=network_data_for_macs(macs, data.network_data))
        new.validate()
        return new

    def _inspect_file(self, facts: VmFacts, path: DatastorePath, record: DriveRecord) -> dict[str, Any]:
        files = self._files(facts)
        try:
            iso = files.download(path, MAX_ISO_BYTES)
        except FileNotFoundError:
            return {"file_exists": False, "problem": f"the device points at {path}, which does not exist"}
        except ValidationError as e:  # too large to be a drive: reported like any other broken file
            return {"file_exists": True, "matches_record": False, "problem": e.message}
        out: dict[str, Any] = {"file_exists": True, "file_bytes": len(iso)}
        sha = hashlib.sha256(iso).hexdigest()
        out["sha256"] = sha
        out["matches_record"] = bool(record.sha256) and sha == record.sha256
        try:
            data = read_iso(iso)
        except ValidationError as e:
            out["problem"] = f"the ISO is not a readable config drive: {e}"
            return out
        out["content"] = {
            "label": data.label,
            "vm_id": data.vm_id,
            "instance_id": data.metadata.get("instance-id"),
            "hostname": data.hostname,
            "public_keys": len(data.public_keys),
            "userdata_bytes": len(data.userdata or b""),
            "password_set": bool(data.password),
        }
        return out

    # ---- reconfigure ---------------------------------------------------------------------------------------

    def _reconfigure_or_clean_up(
        self,
        facts: VmFacts,
        plan: dev.DevicePlan,
        new_record: DriveRecord,
        old_record: DriveRecord,
        files: DatastoreFiles,
        uploaded: DatastorePath | None,
    ) -> None:
        """Reconfigure; when vSphere says it failed, delete the file uploaded for it (unless some device uses
        it after all), so a failure leaves the VM and its folder as they were."""
        try:
            self._reconfigure(facts, plan, new_record, old_record)
        except (vmodl.MethodFault, LockedDoor) as error:
            leftovers = getattr(self._local, "leftovers", None)
            if uploaded is not None and isinstance(error, vim.fault.ConcurrentAccess) and leftovers is not None:
                leftovers.append((files, facts.ref, uploaded))  # the retry may write it again: _optimistic judges
            elif uploaded is not None:
                self._delete_if_unused(files, facts.ref, uploaded)
            raise

    def _delete_if_unused(self, files: DatastoreFiles, ref: vim.VirtualMachine, path: DatastorePath) -> None:
        try:
            devices = self._facts(ref).devices
            if any(dev.iso_path_of(d) == str(path) for d in dev.cdroms(devices)):
                return
            files.delete(path)
        except Exception:  # cleaning up must not hide the failure being reported
            log.warning("could not delete %s after the failed reconfigure", path, exc_info=True)

    def _reconfigure(
        self, facts: VmFacts, plan: dev.DevicePlan, new_record: DriveRecord, old_record: DriveRecord
    ) -> None:
        options = new_record.changes_from(old_record)
        if self.avoid_lock_question:
            options.update({k: v for k, v in AVOID_LOCK_QUESTION_OPTIONS.items() if facts.extra_config.get(k) != v})
        spec = vim.vm.ConfigSpec(
            changeVersion=facts.change_version,
            deviceChange=plan.changes,
            extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in sorted(options.items())],
        )
        refused: list[str] = []
        try:
            task = self.session.call(lambda: facts.ref.ReconfigVM_Task(spec), "ReconfigVM")
        except vmodl.MethodFault:
            raise  # vSphere refused the request: nothing was changed
        except Exception as e:  # the request may have reached vCenter: whether it applies is unknown
            raise OutcomeUnknown(
                f"reconfigure VM {facts.name}: {type(e).__name__} while sending it; it may still apply. Run the same "
                "command again to finish or confirm it"
            ) from e
        try:
            wait_for_task(
                self.session,
                task,
                what=f"reconfigure VM {facts.name}",
                vm=facts.ref,
                on_question=self._locked_door_policy(refused),
                timeout=self.task_timeout,
            )
        except TaskTimeout as e:
            raise OutcomeUnknown(
                f"{e}. The change may still complete; run the same command again to finish or confirm it"
            ) from None
        except vmodl.MethodFault:
            if refused:
                raise LockedDoor(
                    f"the guest of VM {facts.name} has locked its CD-ROM door; the VM keeps its current drive. "
                    "Unmount the drive in the guest (umount/eject) and run again, or pass --force-eject"
                ) from None
            raise

    def _locked_door_policy(self, refused: list[str]) -> Callable[[Any], str | None]:
        def answer(question: Any) -> str | None:
            ids = question_message_ids(question)
            if not any(i in LOCKED_DOOR_MESSAGE_IDS for i in ids) and "locked" not in (question.text or "").lower():
                log.warning("VM question %s is not about the CD-ROM; not answering it", ",".join(ids) or "?")
                return None
            label = "button.yes" if self.force_eject else "button.no"
            key = choice_key(question, label)
            if key is None:
                log.warning("the locked-door question has no %s choice", label)
                return None
            if not self.force_eject:
                refused.append(question.id)
            return key

        return answer

"""``ConfigDriveController``: the Python API's front to the operations, on one vSphere session.

Each method checks its input before vSphere is touched (the user-data limit among it, applied here once), finds
the VM, and runs the operation (drive/<op>.py) through the retry loop (drive/attempts.py) with live or dry-run
effects; what happened comes back as a ``Result``. The operations themselves are in drive/, one file each.
"""

from __future__ import annotations

import contextlib
import secrets
import string
from collections.abc import Iterator
from functools import partial
from typing import Any, Protocol

from .defaults import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_USERDATA_BYTES,
    DEFAULT_TASK_TIMEOUT,
    PASSWORD_LENGTH,
)
from .dispatch import Call, Detach, PasswordReset, Request, StatusRead, parse
from .drive.attach import AttachRequest, attach
from .drive.attempts import run_attempts
from .drive.audit import AuditReport, AuditRequest, Progress, audit
from .drive.detach import detach
from .drive.effects import DryRunEffects, Effects, LiveEffects
from .drive.migrate import MigrationRequest, prepare_migration
from .drive.policy import Policy
from .drive.result import Outcome, Result
from .drive.state import DriveState
from .drive.status import status
from .drive.steps import download_drive
from .drive.update import UpdateRequest, update
from .transport import Transport
from .vmdata import ContentChange, VmData
from .vsphere.connection import Session
from .vsphere.fleet import VsphereFleet
from .vsphere.inventory import fetch_many_vm_facts, find_vm, vm_name_index
from .vsphere.task_poller import SharedTaskPoller
from .vsphere.vm import VsphereVm
from .vsphere_values import VmFacts

__all__ = ["ConfigDriveController", "generate_password"]

VmRef = Any  # a name, inventory path, UUID or id (vm-42), the VM's managed object, or its facts (prefetch)


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password with upper- and lower-case letters and digits (no symbols: they break some guest
    tools and keyboards), from the OS's CSPRNG."""
    alphabet = string.ascii_letters + string.digits
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.islower() for c in pw) and any(c.isupper() for c in pw) and any(c.isdigit() for c in pw):
            return pw


def _detach(vm: VsphereVm, effects: Effects, request: Detach, policy: Policy) -> Outcome:
    return detach(vm, effects, policy, remove=request.remove)


def _status(vm: VsphereVm, effects: Effects, request: StatusRead, policy: Policy) -> Outcome:
    return status(vm)


# {request type: operation}: each operation is (the VM's access, the attempt's effects, the request, the policy)
class Operation(Protocol):
    """An operation of drive/: what it reads and changes through, the request, the policy (bound by keyword)."""

    def __call__(self, vm: VsphereVm, effects: Effects, request: Any, policy: Policy) -> Outcome: ...


OPERATIONS: dict[type, Operation] = {
    AttachRequest: attach,
    UpdateRequest: update,
    MigrationRequest: prepare_migration,
    Detach: _detach,
    StatusRead: _status,
}


class ConfigDriveController:
    """Config drives on the VMs of one vSphere session; safe to share between threads (batch mode does).

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
        task_timeout: float = DEFAULT_TASK_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        datacenter: str | None = None,
        admin_pass: str = "auto",
        max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES,
    ) -> None:
        self.session = session
        self.policy = Policy(
            force_eject=force_eject,
            avoid_lock_question=avoid_lock_question,
            admin_pass=admin_pass,
            max_userdata_bytes=max_userdata_bytes,
            max_attempts=max_attempts,
            default_datastore=session.settings.datastore,
        )
        self.task_timeout = task_timeout
        self.datacenter = datacenter or session.settings.datacenter

    # ---- the operations ------------------------------------------------------------------------------------

    def attach(
        self,
        vm: VmRef,
        data: VmData,
        *,
        datastore: str | None = None,
        controller: str = "auto",
        network_data_auto: bool = False,
        new_instance_id: bool = False,
        dry_run: bool = False,
        transport: Transport | str | None = None,
        guestinfo_password: bool = False,
    ) -> Result:
        """Give the VM a config drive holding ``data`` on a second CD-ROM; idempotent (same data: no change).
        Without a vm-id in ``data``, or with ``new_instance_id``, the drive's vm-id is the VM's instance UUID.
        ``transport``: ``configdrive`` (config-2), ``nocloud`` (a NoCloud seed labelled cidata) or ``guestinfo``
        (keys in extraConfig); None: the drive's own, ``configdrive`` for a new drive (transport.kept_or)."""
        auto = "auto" if network_data_auto else None
        fields = Request(vm, data, datastore=datastore, controller=controller, network_data=auto,
                         new_instance_id=new_instance_id, dry_run=dry_run, transport=transport,
                         guestinfo_password=guestinfo_password)  # fmt: skip
        return self.run(parse("attach", fields, self.policy.max_userdata_bytes))

    def update(
        self,
        vm: VmRef,
        *,
        data: VmData | None = None,
        overrides: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        network_data_auto: bool = False,
        new_instance_id: bool = False,
        dry_run: bool = False,
        transport: Transport | str | None = None,
        guestinfo_password: bool = False,
    ) -> Result:
        """Change the drive's content: download it, apply ``data`` (whole) and/or ``overrides`` (fields:
        userdata, password, public_keys, hostname, network) and ``options`` (the layout: label,
        password_vendor_data, dated_versions), upload under a new name, swap the backing, delete the old. Both are
        checked first (``vmdata.ContentChange``). The vm-id stays (``data`` without one keeps the drive's), unless
        ``new_instance_id`` makes it the VM's instance UUID. ``transport``: move the drive to another ISO
        transport, in the same one swap (None: the drive's own stays)."""
        auto = "auto" if network_data_auto else None
        fields = Request(vm, data, dict(overrides or {}), dict(options or {}), network_data=auto,
                         new_instance_id=new_instance_id, dry_run=dry_run, transport=transport,
                         guestinfo_password=guestinfo_password)  # fmt: skip
        return self.run(parse("update", fields, self.policy.max_userdata_bytes))

    def reset_password(self, vm: VmRef, *, length: int = PASSWORD_LENGTH, dry_run: bool = False) -> Result:
        """Put a new random password on the drive; the result carries it (``extra["password"]``), once."""
        return self.run(Call(vm, PasswordReset(length), dry_run))

    def detach(self, vm: VmRef, *, dry_run: bool = False) -> Result:
        """VM stopped: disconnect the drive (remove it when the VM is off), then delete its ISO (the empty folder
        stays: a start may be attaching into it right now)."""
        return self.run(Call(vm, Detach(), dry_run))

    def remove(self, vm: VmRef, *, dry_run: bool = False) -> Result:
        """VM expunged: remove the device, then the ISO and its folder."""
        return self.run(Call(vm, Detach(remove=True), dry_run))

    def prepare_migration(
        self, vm: VmRef, host: str, *, datastore: str | None = None, migrate: bool = False, dry_run: bool = False
    ) -> Result:
        """Make sure ``host`` can see the ISO: copy it to a datastore the host mounts, repoint, delete the old;
        with ``migrate``, then move the VM there."""
        fields = Request(vm, datastore=datastore, host=host, migrate=migrate, dry_run=dry_run)
        return self.run(parse("prepare-migration", fields))

    def status(self, vm: VmRef) -> Result:
        """The drive's device, backing, file and content, read-only."""
        return self.run(Call(vm, StatusRead()))

    def audit(
        self,
        *,
        datacenter: str | None = None,
        folder: str | None = None,
        verify: bool = False,
        fix: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> AuditReport:
        """Every config drive of the datacenter(s), or of the VMs in a VM folder: one finding per VM with a drive
        or a record, and the orphans under ConfigDrive/ (drive/audit.py), read in a few calls whatever the fleet's
        size; ``verify`` downloads each ISO to compare its SHA-256; ``fix`` repairs what is safe (``dry_run``:
        says what it would do)."""
        fleet = VsphereFleet(
            self.session,
            datacenter or self.datacenter,
            folder,
            force_eject=self.policy.force_eject,
            task_timeout=self.task_timeout,
            progress=progress,
        )
        effects_type = DryRunEffects if dry_run else LiveEffects
        return audit(fleet, AuditRequest(verify=verify, fix=fix), self.policy, effects_type, progress)

    def read(self, vm: VmRef) -> VmData | None:
        """The content of the VM's config drive (None: it has none attached), read-only."""

        def content(access: VsphereVm, effects: Effects) -> Outcome:
            state = DriveState.of(access.facts())
            data = download_drive(access, state)[1] if state.current else None
            return Outcome(state.facts.name, extra={"data": data})

        access = self._access(vm)
        outcome = run_attempts(partial(content, access), partial(LiveEffects, access), self.policy.max_attempts)
        return outcome.extra["data"]

    # ---- many VMs at once (batch mode) -------------------------------------------------------------------

    def name_index(self) -> dict[str, list[Any]]:
        """Every VM by name, in one call (batch mode resolves a whole file's names with it)."""
        return vm_name_index(self.session)

    def prefetch(self, vms: list[Any]) -> dict[str, VmFacts]:
        """The facts of many VMs, a page a call. An operation given a VM's facts instead of its name or object
        starts from them (and reads the VM again only when it must: a retry, a check)."""
        return fetch_many_vm_facts(self.session, vms)

    @contextlib.contextmanager
    def fleet(self, concurrency: int = 1) -> Iterator[SharedTaskPoller]:
        """While up to ``concurrency`` operations run at once: a connection kept for each (and the poller's), and
        every task in flight polled in one call per round (run each operation inside the poller's
        ``operation()``)."""
        self.session.serve_threads(concurrency + 1)
        with SharedTaskPoller(self.session) as poller:
            yield poller

    # ---- running one -------------------------------------------------------------------------------------

    def run(self, call: Call) -> Result:
        """A checked request (``dispatch.parse``, or the methods above) through the table of operations."""
        if isinstance(call.request, PasswordReset):
            return self._reset_password(call, call.request)
        # each attempt with fresh effects; bound with ``partial``, not lambdas or a helper: no frame of its own
        # between this and the operation, on every call the operation makes
        access = self._access(call.vm)
        operate = partial(OPERATIONS[type(call.request)], access, request=call.request, policy=self.policy)
        effects_type = DryRunEffects if call.dry_run else LiveEffects
        outcome = run_attempts(operate, partial(effects_type, access), self.policy.max_attempts)
        return Result.of(outcome, call.dry_run)

    def _reset_password(self, call: Call, reset: PasswordReset) -> Result:
        """A generated password is valid by construction: the update needs no check."""
        password = generate_password(reset.length)
        result = self.run(Call(call.vm, UpdateRequest(change=ContentChange(password=password)), call.dry_run))
        if not call.dry_run:
            result.extra["password"] = password
        return result

    def _access(self, vm: VmRef) -> VsphereVm:
        """The VM as an operation reads and changes it; a VM's facts read with others' (batch mode) serve its
        first read."""
        prefetched = vm if isinstance(vm, VmFacts) else None
        return VsphereVm(
            self.session,
            prefetched.ref if prefetched is not None else self._resolve(vm),
            force_eject=self.policy.force_eject,
            task_timeout=self.task_timeout,
            prefetched=prefetched,
        )

    def _resolve(self, vm: VmRef) -> Any:
        return vm if not isinstance(vm, str) else find_vm(self.session, vm, self.datacenter)

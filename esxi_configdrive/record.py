"""The record a VM carries in its extraConfig about its config drive, so the drive is found again unambiguously.

Written in the same ReconfigVM as the device change it describes, so the record and the device never disagree
after a crash. Keys (all under ``esxi-configdrive.``):

- ``iso``: the attached ISO, ``[ds] ConfigDrive/<vm>/….iso``; ``digest``: the content digest (FileTree.digest);
  ``sha256``: the ISO file's SHA-256; ``size``: its length in bytes (what a datastore search shows, so ``audit``
  notices a file overwritten behind our back without downloading it; records written before it have none);
  ``owner``: the instance UUID of the VM the drive was made for (a clone
  inherits extraConfig and devices, but not the right to delete its parent's file); ``device``: the CD-ROM's
  device key once known; ``previous``: an ISO replaced by the last swap, deleted after it (a crash in between
  leaves it for the next run to delete); ``folder``: the drive's folder, kept after detach so a re-run can
  finish deleting it; ``cluster``: the datastore cluster the drive's datastore was chosen from (a later update
keeps the drive on that member while it can take a file, else chooses another; records written before it have
none); ``transport``: how the data reaches the guest, written only when it is not a config drive (``guestinfo``:
VMware guestinfo keys, drive/keys.py), so a config drive's record is what it was before transports; ``keys``:
for guestinfo, a digest of each key written (``<key>=<sha256/16>``, comma-separated; never of a key in
``redact``, whose value holds the password: a digest of it could be tried against guesses); ``redact``: the
values cloud-init blanks after reading them (``vendordata`` …).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .transport import DEFAULT_TRANSPORT, Transport

PREFIX = "esxi-configdrive."


@dataclass(frozen=True)
class DriveRecord:
    # the ISO file and its content
    iso: str = ""
    digest: str = ""
    sha256: str = ""
    size: str = ""
    # whose drive, on which device; what a swap or a detach leaves for the next run to finish
    owner: str = ""
    device: str = ""
    previous: str = ""
    folder: str = ""
    cluster: str = ""
    # how the data reaches the guest (guestinfo: what was written, what cloud-init blanks)
    transport: str = ""
    keys: str = ""
    redact: str = ""

    @property
    def drive_transport(self) -> Transport:
        """The recorded transport; none recorded (or one this version does not know): a config drive."""
        try:
            return Transport(self.transport) if self.transport else DEFAULT_TRANSPORT
        except ValueError:
            return DEFAULT_TRANSPORT

    @staticmethod
    def transport_value(transport: Transport) -> str:
        """What the record holds for ``transport``: nothing for the default, so old records stay as they were."""
        return "" if transport is DEFAULT_TRANSPORT else transport.value

    @classmethod
    def from_extra_config(cls, extra: dict[str, str]) -> DriveRecord:
        return cls(**{f.name: extra.get(PREFIX + f.name, "") for f in fields(cls)})

    @property
    def iso_bytes(self) -> int | None:
        """The recorded ISO's size; None when the record predates sizes (or was damaged)."""
        return int(self.size) if self.size.isdigit() else None

    @property
    def device_key(self) -> int | None:
        try:
            return int(self.device) if self.device else None
        except ValueError:
            return None

    def changes_from(self, old: DriveRecord) -> dict[str, str]:
        """The extraConfig values to send to turn ``old`` into this record ("" deletes a key)."""
        return {
            PREFIX + f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(old, f.name)
        }

    def replace(self, **changes: Any) -> DriveRecord:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({k: "" if v is None else str(v) for k, v in changes.items()})
        return DriveRecord(**values)


# KB 2144053: with both set, ESXi answers the locked-door question itself instead of blocking the reconfigure.
AVOID_LOCK_QUESTION_OPTIONS = {"cdrom.showIsoLockWarning": "FALSE", "msg.autoanswer": "TRUE"}
LOCKED_DOOR_MESSAGE_IDS = ("msg.cdromdisconnect.locked", "msg.cdromdisconnect.locked.ISO")

"""How a VM's data reaches its guest: the transports, parsed once where a request enters, and the ISO transports'
table (label, layout builder, layout reader), keyed by transport.

- ``configdrive``: the config-2 ISO (layout.py), what cloud-init's ConfigDrive and cloudbase-init read;
- ``nocloud``: a NoCloud seed ISO labelled ``cidata`` (nocloud.py), what cloud-init's NoCloud reads first;
- ``guestinfo``: VMware guestinfo keys in the VM's extraConfig (guestinfo.py, drive/keys.py): no ISO, no upload,
  one reconfigure; what cloud-init's VMware datasource reads (after NoCloud and ConfigDrive).

The ISO transports share one path on vSphere (upload, one reconfigure that swaps the backing and the record, delete
the old file): the transport chooses the layout and the label only. A VM's transport is in its drive record
(record.py); a record without one is a config drive, as every record written before transports were.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from .errors import ValidationError

if TYPE_CHECKING:
    from .layout import FileTree
    from .vmdata import VmData

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.9 and 3.10

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


class Transport(StrEnum):
    CONFIGDRIVE = "configdrive"
    NOCLOUD = "nocloud"
    GUESTINFO = "guestinfo"


DEFAULT_TRANSPORT = Transport.CONFIGDRIVE
TRANSPORT_CHOICES = tuple(t.value for t in Transport)  # what the edges offer (the Ansible module's choices)


def parse_transport(value: Any, where: str = "transport") -> Transport:
    """A transport named at an edge (the command line, a batch line, the Ansible module), checked once."""
    if isinstance(value, Transport):
        return value
    try:
        return Transport(value)
    except ValueError:
        raise ValidationError(where, f"must be one of {', '.join(TRANSPORT_CHOICES)}") from None


def parse_optional_transport(value: Any, where: str = "transport") -> Transport | None:
    """None (or empty): the VM's own transport stays (attach, update: ``kept_or``)."""
    return None if value is None or value == "" else parse_transport(value, where)


def kept_or(asked: Transport | None, own: Transport) -> Transport:
    """The transport an attach or update writes: the one asked for, else the drive's own (``own``: what the VM's
    record or ISO says; a VM without a drive has the default's), so a re-run without --transport moves nothing."""
    return asked if asked is not None else own


def transport_field(transport: Transport) -> dict[str, str]:
    """A result's ``transport`` field: only when it is not the default, so a config drive's output stays as it was."""
    return {} if transport is DEFAULT_TRANSPORT else {"transport": transport.value}


@dataclass(frozen=True)
class IsoTransport:
    """One ISO transport: the volume label (None: the VM data's own, config-2 unless set), how VmData becomes the
    ISO's file tree, how a tree is read back, and whether a tree read from an ISO is one of this transport's."""

    label: str | None
    build: Callable[..., FileTree]  # (VmData, *, max_userdata_bytes) -> FileTree
    read: Callable[[FileTree], VmData]
    recognises: Callable[[FileTree], bool]


def iso_transport(transport: Transport) -> IsoTransport:
    """The table's entry for ``transport``; a transport with no ISO is refused."""
    table = _iso_transports()
    if transport not in table:
        raise ValidationError("transport", f"{transport.value} puts no ISO on the VM")
    return table[transport]


def _iso_transports() -> dict[Transport, IsoTransport]:
    from . import layout, nocloud  # deferred: the enum above costs nothing to import (the Ansible module needs it)

    return {
        Transport.CONFIGDRIVE: IsoTransport(None, layout.build_tree, layout.parse_tree, layout.is_config_drive),
        Transport.NOCLOUD: IsoTransport(nocloud.LABEL, nocloud.build_tree, nocloud.parse_tree, nocloud.is_seed),
    }


def drive_label(transport: Transport, data: VmData) -> str:
    """The volume label of ``data``'s ISO over ``transport``."""
    return iso_transport(transport).label or data.label


def check_label_for(transport: Transport, label: str | None, where: str = "label") -> None:
    """A label asked for (``--label``) that the transport does not take: refused, not ignored."""
    if label is None:
        return
    if transport is Transport.GUESTINFO:
        raise ValidationError(where, "guestinfo keys have no label; --label is for config drives")
    fixed = iso_transport(transport).label
    if fixed is not None and label != fixed:
        raise ValidationError(where, f"a {transport.value} ISO is labelled {fixed}; --label is for config drives")


def build_drive_tree(data: VmData, transport: Transport, **limits: Any) -> FileTree:
    """The ISO's file tree for ``data`` over ``transport`` (``limits``: ``max_userdata_bytes``)."""
    return iso_transport(transport).build(data, **limits)


def read_drive_tree(tree: FileTree) -> tuple[Transport, VmData]:
    """Which transport an ISO's tree is (by its label and files) and the VM data it holds; a tree that is neither
    is read as a config drive, whose reader says what is missing."""
    for transport, entry in _iso_transports().items():
        if transport is not DEFAULT_TRANSPORT and entry.recognises(tree):
            return transport, entry.read(tree)
    return DEFAULT_TRANSPORT, iso_transport(DEFAULT_TRANSPORT).read(tree)

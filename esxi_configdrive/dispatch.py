"""One command for one VM: the fields an edge hands over (``Request``: the command line's options, a batch line,
the Ansible module's options) parsed once into a typed, frozen ``Call`` (``parse``), checked before anything
touches vSphere. ``ConfigDriveController.run`` takes a call through its table {request type: operation}; the
controller's documented methods parse their arguments the same way, so every entry checks its input once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from .defaults import (
    CONTROLLER_CHOICES,
    DEFAULT_LABEL,
    DEFAULT_MAX_USERDATA_BYTES,
    NETWORK_DATA_CHOICES,
    PASSWORD_LENGTH,
)
from .drive.attach import AttachRequest
from .drive.keys import refuse_unasked_password
from .drive.migrate import MigrationRequest
from .drive.steps import sized_stand_in
from .drive.update import UpdateRequest
from .errors import ValidationError
from .fields import check_datastore_name
from .guestinfo import guestinfo_keys
from .iso import check_size
from .transport import (
    DEFAULT_TRANSPORT,
    Transport,
    build_drive_tree,
    check_label_for,
    parse_optional_transport,
)
from .vmdata import NETWORK_DATA_FIELDS, ContentChange, VmData, check_network_choice

COMMANDS = ("attach", "update", "reset-password", "detach", "remove", "prepare-migration", "status")


@dataclass(frozen=True)
class Request:
    """The fields of one command as an edge gathered them, not yet checked (``parse`` does)."""

    vm: Any  # a name, inventory path, UUID, id (vm-42) or the VM's managed object
    data: VmData | None = None  # attach: the content; update: replaces it
    # update: the edge's fields as given (parse makes them one ContentChange): userdata, password, public_keys,
    # hostname, network; and the layout: label, password_vendor_data, dated_versions
    overrides: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    datastore: str | None = None
    controller: str = "auto"
    network_data: str | None = None  # one of NETWORK_DATA_CHOICES[command]; None: the command's default
    new_instance_id: bool = False  # attach, update: vm-id := the VM's instance UUID
    dry_run: bool = False
    host: str = ""  # prepare-migration
    migrate: bool = False
    length: int = PASSWORD_LENGTH  # reset-password
    transport: Any = None  # attach, update: a transport name; None keeps the drive's own (transport.kept_or)
    guestinfo_password: bool = False  # attach, update: a password may go over guestinfo (drive/keys.py)


@dataclass(frozen=True)
class PasswordReset:
    length: int = PASSWORD_LENGTH


@dataclass(frozen=True)
class Detach:
    remove: bool = False  # the VM is expunged: the CD-ROM, its ISO and folder go (else: stopped)


@dataclass(frozen=True)
class StatusRead:
    pass


Operation = Union[AttachRequest, UpdateRequest, PasswordReset, Detach, MigrationRequest, StatusRead]


@dataclass(frozen=True)
class Call:
    """One checked request for one VM: what ``ConfigDriveController.run`` takes."""

    vm: Any
    request: Operation
    dry_run: bool = False


def check_network_data_option(command: str, choice: str | None, where: str = "network-data") -> None:
    """--network-data (or a line's network_data) is one of the command's choices (defaults.NETWORK_DATA_CHOICES)."""
    if choice is not None and choice not in NETWORK_DATA_CHOICES.get(command, ()):
        choices = NETWORK_DATA_CHOICES.get(command, ())
        raise ValidationError(where, f"must be one of {', '.join(choices)}" if choices else f"not for {command}")


def check_content(
    data: VmData, max_userdata_bytes: int | None, transport: Transport = DEFAULT_TRANSPORT, password: bool = False
) -> None:
    """Content handed in whole: checked against the input limit, and sized as an ISO of ``transport`` without
    writing one; for guestinfo, as its keys (the limits per key and in all, guestinfo.py), and a password only
    when asked for (``password``)."""
    data.validate(max_userdata_bytes)
    if transport is Transport.GUESTINFO:
        refuse_unasked_password(data.password, password)
        guestinfo_keys(sized_stand_in(data), password=password)
        return
    check_size(build_drive_tree(sized_stand_in(data), transport, max_userdata_bytes=None))


def _attach(fields: Request, max_userdata_bytes: int | None) -> Operation:
    """attach's request, checked: the content, the network-data choice against it, the controller, the datastore."""
    data, choice = fields.data, fields.network_data
    if data is None:
        raise ValidationError("vmdata", "attach needs VM data")
    check_network_choice(choice, data.network, data.network_data)
    data = data.copy(**NETWORK_DATA_FIELDS.get(choice or "", {}))
    transport = parse_optional_transport(fields.transport)  # None: the drive's own, checked by the drive (attach.py)
    if transport is not None:
        check_label_for(transport, data.label if data.label != DEFAULT_LABEL else None)
    check_content(data, max_userdata_bytes, transport or DEFAULT_TRANSPORT, fields.guestinfo_password)
    if fields.controller not in CONTROLLER_CHOICES:
        raise ValidationError("controller", f"must be one of {', '.join(CONTROLLER_CHOICES)}")
    if fields.datastore is not None:  # an explicit empty name is a mistake, not "the default"
        check_datastore_name(fields.datastore)
    return AttachRequest(data, fields.datastore, fields.controller, choice == "auto", fields.new_instance_id, transport,
                         fields.guestinfo_password)  # fmt: skip


def _update(fields: Request, max_userdata_bytes: int | None) -> Operation:
    """update's request, checked: the transport to move to, the change (``ContentChange``: its fields with the
    checks the drive will give them; a label the transport takes), new content, and the network-data choice against
    the network they give."""
    data, choice = fields.data, fields.network_data
    transport = parse_optional_transport(fields.transport)
    change = ContentChange.parse(fields.overrides, fields.options, choice, max_userdata_bytes)
    if transport is not None:
        check_label_for(transport, change.label)
    if data is not None:
        check_content(data, max_userdata_bytes, transport or DEFAULT_TRANSPORT, fields.guestinfo_password)
    if transport is Transport.GUESTINFO and change.password:
        refuse_unasked_password(change.password, fields.guestinfo_password)
    network = change.network or (data.network if data is not None else None)
    check_network_choice(choice, network, data.network_data if data is not None else {})
    return UpdateRequest(data, change, fields.new_instance_id, transport, fields.guestinfo_password)


def _prepare_migration(fields: Request, max_userdata_bytes: int | None) -> Operation:
    if fields.datastore is not None:
        check_datastore_name(fields.datastore)
    return MigrationRequest(fields.host, fields.datastore, fields.migrate)


_PARSERS = {
    "attach": _attach,
    "update": _update,
    "reset-password": lambda fields, limit: PasswordReset(fields.length),
    "detach": lambda fields, limit: Detach(),
    "remove": lambda fields, limit: Detach(remove=True),
    "prepare-migration": _prepare_migration,
    "status": lambda fields, limit: StatusRead(),
}


def parse(command: str, fields: Request, max_userdata_bytes: int | None = DEFAULT_MAX_USERDATA_BYTES) -> Call:
    """The checked call for ``command``: raises ValidationError naming the field, before vSphere is touched."""
    parser = _PARSERS.get(command)
    if parser is None:
        raise ValidationError("command", f"unknown command {command!r} (expected one of {', '.join(COMMANDS)})")
    check_network_data_option(command, fields.network_data)
    if fields.transport is not None and command not in ("attach", "update"):
        raise ValidationError("transport", f"not for {command}: it reads the VM's transport from its drive record")
    return Call(fields.vm, parser(fields, max_userdata_bytes), fields.dry_run)


def has_change(request: Request) -> bool:
    """An update needs something to change."""
    return bool(
        request.data is not None
        or request.overrides
        or request.options
        or request.network_data
        or request.new_instance_id
        or request.transport is not None
    )

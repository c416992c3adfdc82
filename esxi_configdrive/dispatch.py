"""One command for one VM, as a plain value (``Request``), and the one place that turns it into a controller call.
The command line, batch lines and the Ansible modules all come through here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .defaults import NETWORK_DATA_CHOICES, PASSWORD_LENGTH
from .errors import ValidationError
from .vmdata import NETWORK_DATA_FIELDS, VmData, check_network_choice

COMMANDS = ("attach", "update", "reset-password", "detach", "remove", "prepare-migration", "status")


@dataclass(frozen=True)
class Request:
    vm: Any  # a name, inventory path, UUID, id (vm-42) or the VM's managed object
    data: VmData | None = None  # attach: the content; update: replaces it
    overrides: dict[str, Any] = field(
        default_factory=dict
    )  # update: userdata, password, public_keys, hostname, network
    options: dict[str, Any] = field(default_factory=dict)  # update: layout fields (label, dated_versions …)
    datastore: str | None = None
    controller: str = "auto"
    network_data: str | None = None  # one of NETWORK_DATA_CHOICES[command]; None: the command's default
    new_instance_id: bool = False  # attach, update: vm-id := the VM's instance UUID
    dry_run: bool = False
    host: str = ""  # prepare-migration
    migrate: bool = False
    length: int = PASSWORD_LENGTH  # reset-password


def check_network_data_option(command: str, choice: str | None, where: str = "network-data") -> None:
    """--network-data (or a line's network_data) is one of the command's choices (defaults.NETWORK_DATA_CHOICES)."""
    if choice is not None and choice not in NETWORK_DATA_CHOICES.get(command, ()):
        choices = NETWORK_DATA_CHOICES.get(command, ())
        raise ValidationError(where, f"must be one of {', '.join(choices)}" if choices else f"not for {command}")


def check_request(command: str, request: Request) -> None:
    """What can be checked of a request without vSphere (the CLI calls it before it connects)."""
    if command in ("attach", "update"):
        data = request.data
        network = request.overrides.get("network") or (data.network if data is not None else None)
        check_network_choice(request.network_data, network, data.network_data if data is not None else {})


def run(controller: Any, command: str, request: Request) -> Any:
    """The controller call for ``command``; returns its Result."""
    check_request(command, request)
    auto = request.network_data == "auto"
    layout = NETWORK_DATA_FIELDS.get(request.network_data or "", {})
    if command == "attach":
        if request.data is None:
            raise ValidationError("vmdata", "attach needs VM data")
        return controller.attach(
            request.vm,
            request.data.copy(**layout),
            datastore=request.datastore,
            controller=request.controller,
            network_data_auto=auto,
            new_instance_id=request.new_instance_id,
            dry_run=request.dry_run,
        )
    if command == "update":
        return controller.update(
            request.vm,
            data=request.data,
            overrides=request.overrides,
            options={**request.options, **layout},
            network_data_auto=auto,
            new_instance_id=request.new_instance_id,
            dry_run=request.dry_run,
        )
    if command == "reset-password":
        return controller.reset_password(request.vm, length=request.length, dry_run=request.dry_run)
    if command == "detach":
        return controller.detach(request.vm, dry_run=request.dry_run)
    if command == "remove":
        return controller.remove(request.vm, dry_run=request.dry_run)
    if command == "prepare-migration":
        return controller.prepare_migration(
            request.vm, request.host, datastore=request.datastore, migrate=request.migrate, dry_run=request.dry_run
        )
    if command == "status":
        return controller.status(request.vm)
    raise ValidationError("command", f"unknown command {command!r} (expected one of {', '.join(COMMANDS)})")


def has_change(request: Request) -> bool:
    """An update needs something to change."""
    return bool(
        request.data is not None
        or request.overrides
        or request.options
        or request.network_data
        or request.new_instance_id
    )

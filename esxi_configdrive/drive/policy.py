"""How the operations decide where the admin may choose: one value per controller, passed to every operation."""

from __future__ import annotations

from dataclasses import dataclass

from ..defaults import ADMIN_PASS_CHOICES, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_USERDATA_BYTES
from ..errors import ValidationError


@dataclass(frozen=True)
class Policy:
    """``force_eject`` answers the guest's locked-door question with yes (the guest loses its mounted drive);
    otherwise it is answered no, the operation fails and the VM keeps its old drive. ``avoid_lock_question`` sets
    the VM options that make ESXi not ask (effective from the VM's next power-on). ``admin_pass``: whether
    meta_data.json carries the password for cloudbase-init (auto: for Windows guests)."""

    force_eject: bool = False
    avoid_lock_question: bool = False
    admin_pass: str = "auto"
    max_userdata_bytes: int = DEFAULT_MAX_USERDATA_BYTES
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    default_datastore: str | None = None  # GOVC_DATASTORE

    def __post_init__(self) -> None:
        if self.admin_pass not in ADMIN_PASS_CHOICES:
            raise ValidationError("admin-pass", f"must be one of {', '.join(ADMIN_PASS_CHOICES)}")

"""esxi-configdrive: config drives (ISO 9660, label ``config-2``) for VMware vSphere VMs.

``VmData``, ``build_iso`` and ``read_iso`` need no vSphere libraries; ``ConfigDriveController`` (which imports
pyVmomi) is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from .errors import ValidationError
from .iso import build_iso, read_iso
from .vmdata import VmData

__version__ = "0.1.0"
__all__ = ["ConfigDriveController", "ValidationError", "VmData", "build_iso", "read_iso"]


def __getattr__(name: str) -> Any:
    if name == "ConfigDriveController":
        from .controller import ConfigDriveController

        return ConfigDriveController
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

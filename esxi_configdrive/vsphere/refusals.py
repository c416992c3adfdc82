"""A datastore that refuses the first write: an NFS export without ``no_root_squash`` mounts read-write and looks
healthy, and refuses file creation only when it is tried ("Permission denied"; a read-only one says "Read-only file
system"). Nothing in the datastore's properties shows it beforehand (../shared/REFERENCE.md §9)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyVmomi import vim

from ..errors import ConfigDriveError, fault_message
from ..vsphere_values import DatastorePath


@contextmanager
def creating(path: DatastorePath) -> Iterator[None]:
    """Around a call that creates ``path``: a refused creation becomes one line saying why it may be."""
    try:
        yield
    except vim.fault.CannotCreateFile as fault:
        raise ConfigDriveError(
            f"datastore {path.datastore} refused to create {path} ({fault_message(fault)}): an NFS export without "
            "no_root_squash (or mounted read-only) lets ESXi mount it but not write to it; export it with "
            "no_root_squash, or give another --datastore"
        ) from None

"""Which datastore a drive may go to: one that can take a file now (accessible, not in maintenance mode, not
mounted read-only), and, for a datastore cluster named where a datastore was expected, the member to use.

A Storage DRS pod is not a datastore (``[Pod] x`` is InvalidDatastore), and SDRS recommends placements for VMs
and disks, not loose files: the choice is ours, made as community.vmware's ``vmware_guest`` makes it without
SDRS (the usable member with the most free space), restricted to members every host of the VM's cluster mounts
so the VM can move within it (../shared/REFERENCE.md §9). Plain values only: decided here, read in vsphere/.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ValidationError
from ..vsphere_values import DatastoreCluster, DatastoreInfo


@dataclass(frozen=True)
class Placement:
    """Where a new ISO goes; ``cluster``: the datastore cluster the member was chosen from ("" for a datastore
    named or found directly); ``left_out``: the members not chosen because they cannot take it, and why."""

    datastore: DatastoreInfo
    cluster: str = ""
    left_out: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """The line a result shows for a choice made in a datastore cluster."""
        ds = self.datastore
        text = f"datastore cluster {self.cluster}: chose member {ds.name} ({gib(ds.free_space)} free, the most"
        text += " of the members that can take the drive)"
        if self.left_out:
            text += "; left out: " + ", ".join(f"{name} ({why})" for name, why in self.left_out)
        return text


def problem(ds: DatastoreInfo) -> str:
    """Why a new file cannot go to ``ds`` ("" when it can). Root squash on NFS is not visible here: it shows
    only when the first write is refused (vsphere/refusals.py)."""
    if not ds.accessible:
        return "not accessible"
    if ds.maintenance:
        return f"in maintenance mode ({ds.maintenance})"
    if ds.read_only_on:
        return "mounted read-only"
    return ""


def checked(ds: DatastoreInfo) -> Placement:
    """A datastore named by the user: refused (bad input, nothing touched yet) when it cannot take the drive."""
    why = problem(ds)
    if why:
        raise ValidationError("datastore", f"datastore {ds.name} cannot take the config drive: {why}")
    return Placement(ds)


def choose_member(cluster: DatastoreCluster) -> Placement:
    """The member of ``cluster`` to use: usable, mounted by every host of the VM's cluster, most free space
    (the name breaks ties, so the choice is the same every run)."""
    left_out = []
    usable = []
    for member in cluster.members:
        why = problem(member) or _not_everywhere(member, cluster)
        if why:
            left_out.append((member.name, why))
        else:
            usable.append(member)
    if not usable:
        reasons = "; ".join(f"{name}: {why}" for name, why in left_out) or "it has no members"
        raise ValidationError(
            "datastore", f"no member of datastore cluster {cluster.name} can take the drive ({reasons})"
        )
    best = min(usable, key=lambda d: (-(d.free_space or 0), d.name))
    return Placement(best, cluster.name, tuple(left_out))


def usable_in(ds: DatastoreInfo | None) -> bool:
    """A datastore the drive is on may stay there: known and able to take a file (a later update keeps it)."""
    return ds is None or not problem(ds)


def _not_everywhere(member: DatastoreInfo, cluster: DatastoreCluster) -> str:
    missing = sorted(cluster.host_names.get(h, h) for h, sees in cluster.sees.items() if member.name not in sees)
    return f"not mounted on host {', '.join(missing)}" if missing else ""


def gib(size: int | None) -> str:
    """Free space as a person reads it in a placement line."""
    return "unknown" if size is None else f"{size / 2**30:.1f} GiB"

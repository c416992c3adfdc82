"""Which datastore a drive may go to (drive/placement.py), on plain values: what makes a datastore unusable, and
which member of a datastore cluster is chosen. The live tests (test_placement_live.py) show the same on the
harness; these pin the rules themselves."""

from __future__ import annotations

import pytest

from esxi_configdrive.drive.placement import checked, choose_member, problem
from esxi_configdrive.errors import ValidationError
from esxi_configdrive.vsphere_values import DatastoreCluster, DatastoreInfo

GIB = 2**30
HOSTS = {"host-1": "esx1", "host-2": "esx2"}


def ds(name: str, free: int | None = 10, **state) -> DatastoreInfo:
    return DatastoreInfo(name, free_space=None if free is None else free * GIB, **state)


def cluster(*members: DatastoreInfo, sees: dict[str, set[str]] | None = None) -> DatastoreCluster:
    everywhere = {m.name for m in members}
    sees = sees if sees is not None else {h: everywhere for h in HOSTS}
    return DatastoreCluster("Pod", members, {h: frozenset(s) for h, s in sees.items()}, HOSTS)


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ({"accessible": False}, "not accessible"),
        ({"maintenance": "enteringMaintenance"}, "in maintenance mode (enteringMaintenance)"),
        ({"read_only_on": ("host-2",)}, "mounted read-only"),
        ({}, ""),
    ],
)
def test_what_makes_a_datastore_unusable(state, why):
    assert problem(ds("A", **state)) == why


def test_a_named_unusable_datastore_is_bad_input_with_the_reason():
    with pytest.raises(ValidationError, match="datastore A cannot take the config drive: not accessible") as e:
        checked(ds("A", accessible=False))
    assert e.value.exit_status == 2
    assert checked(ds("B")).datastore.name == "B"


def test_the_usable_member_with_most_free_space_that_every_host_mounts_is_chosen():
    pod = cluster(
        ds("ReadOnly", 90, read_only_on=("host-1",)),
        ds("OneHost", 80),
        ds("Big", 40),
        ds("Small", 20),
        sees={"host-1": {"ReadOnly", "OneHost", "Big", "Small"}, "host-2": {"ReadOnly", "Big", "Small"}},
    )
    placement = choose_member(pod)
    assert (placement.datastore.name, placement.cluster) == ("Big", "Pod")
    assert placement.left_out == (("ReadOnly", "mounted read-only"), ("OneHost", "not mounted on host esx2"))
    assert placement.describe().startswith("datastore cluster Pod: chose member Big (40.0 GiB free")


def test_equal_free_space_is_decided_by_name_and_unknown_counts_as_none():
    assert choose_member(cluster(ds("B", 5), ds("A", 5))).datastore.name == "A"
    assert choose_member(cluster(ds("A", None), ds("B", 1))).datastore.name == "B"


def test_a_cluster_with_no_usable_member_names_each_reason():
    with pytest.raises(ValidationError, match=r"no member of datastore cluster Pod can take the drive \(A: in maint"):
        choose_member(cluster(ds("A", maintenance="inMaintenance"), ds("B", accessible=False)))
    with pytest.raises(ValidationError, match="it has no members"):
        choose_member(cluster())

"""Uploading a 64 MiB ISO: how much does peak memory rise above the ISO itself? (goal: less than 16 MiB)

The ISO is built in memory first (it is ≤ 64 MiB by design); the upload must send it without copying it.
Measured twice: Python allocations (tracemalloc's peak) and the process's peak RSS (VmHWM, reset through
/proc/self/clear_refs just before the upload). Run: .venv/bin/python benchmarks/bench_streaming.py
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from vsphere_harness import Vcsim  # noqa: E402

from esxi_configdrive import VmData  # noqa: E402
from esxi_configdrive.iso import MAX_ISO_BYTES, tree_to_iso  # noqa: E402
from esxi_configdrive.layout import build_tree  # noqa: E402
from esxi_configdrive.vsphere.connection import ConnectionSettings, Session  # noqa: E402
from esxi_configdrive.vsphere.datastore import DatastoreFiles  # noqa: E402
from esxi_configdrive.vsphere.inventory import fetch_vm_facts, find_vm  # noqa: E402
from esxi_configdrive.vsphere_values import DatastorePath  # noqa: E402

MiB = 1024 * 1024


def rss_peak_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def big_iso() -> bytes:
    tree = build_tree(VmData.from_dict({"metadata": {"vm-id": "stream-test"}}))
    room = MAX_ISO_BYTES - MiB // 2  # leave room for the file system's own structures
    tree.files["openstack/content/0000"] = os.urandom(room)
    return tree_to_iso(tree)


def main() -> int:
    iso = big_iso()
    with Vcsim() as sim:
        env = {"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
               "GOVC_TLS_CA_CERTS": sim.ca_file}  # fmt: skip
        with Session(ConnectionSettings.from_sources(env=env, prompt=False)) as session:
            facts = fetch_vm_facts(session, find_vm(session, "DC0_H0_VM0"))
            files = DatastoreFiles(session, facts.datacenter, facts.datacenter_path)
            target = DatastorePath("LocalDS_0", "stream-bench/big.iso")
            files.mkdir(target.folder)
            files.upload(target, b"warm-up")  # the connection pool and TLS session exist before measuring
            tracemalloc.start()
            tracemalloc.reset_peak()
            base_py = tracemalloc.get_traced_memory()[0]
            have_rss = reset_rss_peak()
            base_rss = rss_peak_kib()
            files.upload(target, iso)
            peak_py = tracemalloc.get_traced_memory()[1] - base_py
            peak_rss = rss_peak_kib() - base_rss
            tracemalloc.stop()
            size = len(files.download(target, MAX_ISO_BYTES + MiB))
            files.delete(target.folder)
    print(f"uploaded a {len(iso) / MiB:.1f} MiB ISO (the server has {size / MiB:.1f} MiB)")
    print(f"  peak Python allocations during the upload: +{peak_py / MiB:.2f} MiB")
    if have_rss:
        print(f"  peak RSS during the upload: +{peak_rss / 1024:.2f} MiB")
    worst = max(peak_py / MiB, peak_rss / 1024 if have_rss else 0)
    print(f"  goal: less than 16 MiB above the ISO itself: {'met' if worst < 16 else 'NOT MET'}")
    return 0 if worst < 16 and size == len(iso) else 1


if __name__ == "__main__":
    sys.exit(main())

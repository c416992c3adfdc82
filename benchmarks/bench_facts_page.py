"""One facts page (issue 20): the client CPU (thread time, i.e. time holding the interpreter lock) of reading the
facts of 100 VMs of the harness in one RetrievePropertiesEx, as ``fetch_many_vm_facts`` does in a batch, and of
the same page parsed by pyVmomi's own deserializer (the path before the fast parser), median of ``--rounds``.

Run: .venv/bin/python benchmarks/bench_facts_page.py [--vms 100] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from facts_reference import pyvmomi_facts_page  # noqa: E402
from tool_fixtures import settings_for  # noqa: E402
from vsphere_harness import Vcsim  # noqa: E402

from esxi_configdrive.vsphere import inventory  # noqa: E402
from esxi_configdrive.vsphere.connection import Session  # noqa: E402


def cpu_of(fn, rounds: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(rounds):
        w, c = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    with Vcsim(vms=args.vms) as sim:
        session = Session(settings_for(sim)).connect()
        vms = [v for vs in inventory.vm_name_index(session).values() for v in vs][: args.vms]
        runs = {
            "pyVmomi (main)": lambda: pyvmomi_facts_page(session, vms),
            "fetch_many_vm_facts": lambda: inventory.fetch_many_vm_facts(session, vms, page=len(vms)),
        }
        for name, fn in runs.items():
            fn()  # warm: connection, per-type caches
            cpu, wall = cpu_of(fn, args.rounds)
            print(f"{name:24s} {len(vms)} VMs: CPU {cpu * 1000:7.1f} ms  wall {wall * 1000:7.1f} ms")
        session.close()


if __name__ == "__main__":
    main()

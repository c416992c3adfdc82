"""Requests per command on a namespace (vSAN-like) datastore of the harness, beside the same commands on VMFS
(LocalDS_0), each in a session of its own as the command line runs them. Counts come from the harness. Run:
.venv/bin/python benchmarks/bench_namespace.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]

from bench_round_trips import DATA  # noqa: E402
from vsphere_harness import Vcsim, connect, create_local_datastore, create_vm, disconnect  # noqa: E402

from esxi_configdrive.controller import ConfigDriveController  # noqa: E402
from esxi_configdrive.vsphere.connection import ConnectionSettings, Session  # noqa: E402

NAMESPACE = "vsanBench"


def count(sim: Vcsim, job, faults: dict) -> tuple[int, dict]:
    sim.reset_faults()  # counters to zero
    sim.set_faults(faults)
    job()
    c = sim.counters()
    total = c["soap_calls"] + sum(c["folder_requests"].values())
    return total, {**c["soap_by_method"], **{f"HTTP {k}": v for k, v in c["folder_requests"].items()}}


def commands(sim: Vcsim, datastore: str, first: str, vm: str, faults: dict) -> dict[str, tuple[int, dict]]:
    settings = ConnectionSettings.from_sources(
        env={"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
             "GOVC_TLS_CA_CERTS": sim.ca_file}, prompt=False)  # fmt: skip

    def fresh(job):  # a session per command, as the CLI has it; counted after login
        with Session(settings) as session:
            session.connect()
            tool = ConfigDriveController(session)
            return count(sim, lambda: job(tool), faults)

    return {
        "attach (first on the datastore)": fresh(lambda t: t.attach(first, DATA, datastore=datastore)),
        "attach": fresh(lambda t: t.attach(vm, DATA, datastore=datastore)),
        "unchanged re-run": fresh(lambda t: t.attach(vm, DATA, datastore=datastore)),
        "status": fresh(lambda t: t.status(vm)),
        "update": fresh(lambda t: t.update(vm, overrides={"password": "Bench-pw-2"})),
        "detach": fresh(lambda t: t.detach(vm)),
    }


def main() -> int:
    with Vcsim() as sim:
        si = connect(sim)
        try:
            create_local_datastore(si, "DC0_H0", NAMESPACE)
            names = [create_vm(si, f"bench-{n}").name for n in range(4)]
        finally:
            disconnect(si)
        vmfs = commands(sim, "LocalDS_0", names[0], names[1], {})
        vsan = commands(
            sim, NAMESPACE, names[2], names[3], {"namespace": {"datastores": [NAMESPACE], "backings": "uuid"}}
        )
    print(f"{'command':<33}{'VMFS':>6}{'vSAN':>6}  vSAN's requests")
    for job, (n, _) in vmfs.items():
        m, detail = vsan[job]
        print(f"{job:<33}{n:>6}{m:>6}  {', '.join(f'{k} {v}' for k, v in sorted(detail.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

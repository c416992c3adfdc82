"""Requests per command against vcsim, after login: the tool beside a naive pyVmomi implementation.

Counts come from the harness (every SOAP call by operation, every /folder request by method), so nothing the
client library does behind our back is missed. Run: .venv/bin/python benchmarks/bench_round_trips.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]

import naive  # noqa: E402
from vsphere_harness import Vcsim, connect, create_vm, disconnect  # noqa: E402

from esxi_configdrive import VmData  # noqa: E402
from esxi_configdrive.controller import ConfigDriveController  # noqa: E402
from esxi_configdrive.vsphere.connection import ConnectionSettings, Session  # noqa: E402

GOALS = {"attach (first on the datastore)": 8, "attach": 8, "unchanged re-run": 3, "status": 3, "update": 12,
         "detach": 8}  # fmt: skip
DATA = VmData.from_dict(
    {"metadata": {"vm-id": "8a4f2c61-0d3b-4e5a-9f7c-1b2d3e4f5a6b", "local-hostname": "bench"}, "password": "Bench-pw-1"}
)


def count(sim: Vcsim, job) -> tuple[int, dict]:
    sim.reset_faults()  # counters to zero
    job()
    c = sim.counters()
    total = c["soap_calls"] + sum(c["folder_requests"].values())
    return total, {**c["soap_by_method"], **{f"HTTP {k}": v for k, v in c["folder_requests"].items()}}


def main() -> int:
    with Vcsim() as sim:
        si = connect(sim)
        try:
            tool_vm, naive_vm = create_vm(si, "bench-tool").name, create_vm(si, "bench-naive").name
            tool_first, naive_first = create_vm(si, "bench-tool-0").name, create_vm(si, "bench-naive-0").name
        finally:
            disconnect(si)
        settings = ConnectionSettings.from_sources(
            env={"GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
                 "GOVC_TLS_CA_CERTS": sim.ca_file}, prompt=False)  # fmt: skip
        with Session(settings) as session:
            tool = ConfigDriveController(session)
            ours = {
                # the datastore's first drive also creates ConfigDrive/ (two more MakeDirectory calls)
                "attach (first on the datastore)": count(sim, lambda: tool.attach(tool_first, DATA)),
                "attach": count(sim, lambda: tool.attach(tool_vm, DATA)),
                "unchanged re-run": count(sim, lambda: tool.attach(tool_vm, DATA)),
                "status": count(sim, lambda: tool.status(tool_vm)),
                "update": count(sim, lambda: tool.update(tool_vm, overrides={"password": "Bench-pw-2"})),
                "detach": count(sim, lambda: tool.detach(tool_vm)),
            }
        si = connect(sim)
        try:
            base, verify = sim.url.rsplit("/sdk", 1)[0], sim.ca_file
            theirs = {
                "attach (first on the datastore)": count(
                    sim, lambda: naive.attach(si, base, verify, naive_first, DATA)
                ),
                "attach": count(sim, lambda: naive.attach(si, base, verify, naive_vm, DATA)),
                "unchanged re-run": count(sim, lambda: naive.attach(si, base, verify, naive_vm, DATA)),
                "status": count(sim, lambda: naive.status(si, base, verify, naive_vm)),
                "update": count(sim, lambda: naive.update(si, base, verify, naive_vm, "Bench-pw-2")),
                "detach": count(sim, lambda: naive.detach(si, base, verify, naive_vm)),
            }
        finally:
            disconnect(si)

    print(f"{'command':<33}{'tool':>6}{'goal':>6}{'naive':>7}{'ratio':>7}  tool's requests")
    ok = True
    for job, goal in GOALS.items():
        n, detail = ours[job]
        m, _ = theirs[job]
        ok &= n <= goal
        breakdown = ", ".join(f"{k} {v}" for k, v in sorted(detail.items()))
        print(f"{job:<33}{n:>6}{'≤' + str(goal):>6}{m:>7}{m / n:>6.1f}x  {breakdown}")
    print("all within goals" if ok else "SOME ABOVE GOAL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The Ansible collection over a fleet: attach a config drive to every VM of a simulator holding 200 VMs, with an
injected per-request latency, three ways, side by side in one run:

- ``loop:`` over the module: one task, one module run per VM, each logging in (what a first playbook does);
- an inventory of the VMs with ``delegate_to: localhost`` and ``--forks 8``: one module run and login per VM,
  8 at a time (how fleet playbooks usually run);
- one task with ``vms:``: one module run, one session, the package's batch mode at concurrency 8.

Every way starts from VMs without a drive (they are removed in between, with latency off) and must report all
VMs changed. Prints wall time, VMs/s and the ratios; Ansible's own start-up (a play doing nothing) is shown for
scale.

Run: .venv/bin/python benchmarks/bench_ansible.py [--vms-per-host 100] [--latency-ms 30] [--forks 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "ansible"), str(ROOT)]

from ansible_harness import Ansible, install_collection  # noqa: E402
from pyVmomi import vim  # noqa: E402
from vsphere_harness import Vcsim, connect, disconnect, retrieve  # noqa: E402

DRIVE = "esxi_configdrive.vsphere.config_drive"


def vmdata(i: int) -> dict:
    return {"metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}", "local-hostname": f"node-{i}"},
            "userdata": f"#cloud-config\n# node {i}\n"}  # fmt: skip


def timed(ansible: Ansible, plays: list[dict], **kwargs) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    run = ansible.playbook(plays, timeout=3600, **kwargs)
    seconds = time.perf_counter() - started
    if run.rc != 0:
        raise SystemExit(f"playbook failed:\n{run.output[-3000:]}")
    return seconds, [r["result"] for r in run.results]


def remove_all(ansible: Ansible, names: list[str]) -> None:
    """Back to no drive anywhere (latency off: not part of any measurement)."""
    ansible.sim.set_faults(latency_ms=0)
    play = {"hosts": "localhost", "gather_facts": False,
            "tasks": [{DRIVE: {"vms": [{"vm": n} for n in names], "state": "absent", "concurrency": 8}}]}  # fmt: skip
    timed(ansible, [ansible.with_defaults(play)])


def changed_count(results: list[dict]) -> int:
    """VMs changed, over the recorded task results (a loop's items, a batch's entries, one result per host)."""
    count = 0
    for r in results:
        items = r.get("results") or [r]
        count += sum(1 for item in items if item.get("changed") and "error" not in item)
    return count


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms-per-host", type=int, default=100, help="vcsim -vms (200 VMs at 100)")
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--forks", type=int, default=8)
    args = ap.parse_args()

    with Vcsim(vms=args.vms_per_host) as sim, tempfile.TemporaryDirectory() as tmpdir:
        work = Path(tmpdir)
        si = connect(sim)
        try:
            names = sorted(r["name"] for r in retrieve(si, vim.VirtualMachine, ["name"]))
        finally:
            disconnect(si)
        n = len(names)
        ansible = Ansible(sim, install_collection(work / "collection"), work)
        fleet = [{"vm": name, "vmdata": vmdata(i)} for i, name in enumerate(names)]
        (work / "fleet.json").write_text(json.dumps({"fleet": fleet}))
        extra_vars = ["-e", f"@{work / 'fleet.json'}"]
        print(f"fleet: {n} VMs in vcsim, {args.latency_ms:.0f} ms injected per request")

        idle = {"hosts": "localhost", "gather_facts": False, "tasks": [{"ansible.builtin.meta": "noop"}]}
        startup, _ = timed(ansible, [idle])

        loop = {"hosts": "localhost", "gather_facts": False, "tasks": [
            {DRIVE: {"name": "{{ item.vm }}", "vmdata": "{{ item.vmdata }}"}, "loop": "{{ fleet }}"}]}  # fmt: skip
        # the inventory of docs/ansible.md: one host per VM, its drive content a host variable
        entry = {"vm": "{{ inventory_hostname }}", "vmdata": "{{ config_drive }}"}
        inventory = {"fleet": {"hosts": {name: {"config_drive": vmdata(i)} for i, name in enumerate(names)},
                               "vars": {"config_drive_entry": entry}}}  # fmt: skip
        forks = {"hosts": "fleet", "gather_facts": False, "tasks": [
            {DRIVE: {"name": "{{ inventory_hostname }}", "vmdata": "{{ config_drive }}"},
             "delegate_to": "localhost"}]}  # fmt: skip
        batch = {"hosts": "fleet", "gather_facts": False, "tasks": [
            {DRIVE: {"vms": "{{ ansible_play_hosts | map('extract', hostvars, 'config_drive_entry') | list }}",
                     "concurrency": 8}, "run_once": True, "delegate_to": "localhost"}]}  # fmt: skip

        rows: dict[str, float] = {}
        ways = [
            ("loop: (one login per VM)", [ansible.with_defaults(loop)], {}),
            (f"inventory, --forks {args.forks}", [ansible.with_defaults(forks)],
             {"inventory": inventory, "options": ["--forks", str(args.forks)]}),
            ("vms:, concurrency 8 (one session)", [ansible.with_defaults(batch)], {"inventory": inventory}),
        ]  # fmt: skip
        for label, plays, kwargs in ways:
            remove_all(ansible, names)
            sim.set_faults(latency_ms=args.latency_ms)
            options = [*kwargs.pop("options", []), *extra_vars]
            seconds, results = timed(ansible, plays, options=options, **kwargs)
            if changed_count(results) != n:
                raise SystemExit(f"{label}: {changed_count(results)} of {n} VMs changed")
            rows[label] = seconds
        sim.set_faults(latency_ms=0)

    print(f"ansible-playbook start-up (a play doing nothing): {startup:.1f} s")
    print(f"{'attach to every VM':<36}{'wall time':>12}{'VMs/s':>10}")
    for label, seconds in rows.items():
        print(f"{label:<36}{seconds:>10.1f} s{n / seconds:>10.1f}")
    loop_s, forks_s, batch_s = rows.values()
    print(f"ratio vms: / loop: {loop_s / batch_s:.1f}x; vms: / forks {args.forks}: {forks_s / batch_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

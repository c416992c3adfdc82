"""A fleet: attach then update (password rotation) on every VM of a simulator holding 200 VMs, with the real CLI in
batch mode, at concurrency 1, 8 and 32, with an injected per-request latency (vcsim answers in microseconds on
loopback; a real vCenter takes tens of milliseconds per call). The previous release (0.1.0, from
tests/data/) runs the same batches beside the current code, in the same run.

Prints VMs per second and requests per VM (counted by the harness: every SOAP call and /folder request, login
included) for both, the goals (attach <= 3.2 and update <= 4.2 requests per VM at concurrency 8: the floor is 3
and 4, what must be done per VM), where throughput stops growing with concurrency, and the CLI's peak memory
for a quarter of the fleet and for all of it (it should not grow with the number of VMs).

Run: .venv/bin/python benchmarks/bench_fleet.py [--vms-per-host 100] [--latency-ms 30] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from pyVmomi import vim  # noqa: E402
from vsphere_harness import Vcsim, connect, disconnect, retrieve  # noqa: E402

PYTHON = str(ROOT / ".venv/bin/python")
PREVIOUS_ARCHIVE = ROOT / "tests/data/esxi_configdrive-0.1.0-7e465ed.tar.gz"
GOALS = {"attach": 3.2, "update": 4.2}  # requests per VM at concurrency 8, 200 VMs (issue 13)
GOAL_CONCURRENCY = 8


def vmdata(i: int) -> dict:
    return {"metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}", "local-hostname": f"node-{i}"},
            "userdata": f"#cloud-config\n# node {i}\n", "password": f"First-pw-{i}"}  # fmt: skip


def cli(package_dir: Path | None) -> list[str]:
    """The current CLI, or the previous release's unpacked into ``package_dir``."""
    if package_dir is None:
        return [PYTHON, "-m", "esxi_configdrive.cli"]
    code = "import sys; from esxi_configdrive_previous.cli import main; sys.exit(main(sys.argv[1:]))"
    return [PYTHON, "-c", f"import sys; sys.path.insert(0, {str(package_dir)!r}); {code}"]


def unpack_previous(tmp: Path) -> Path:
    root = tmp / "previous"
    with tarfile.open(PREVIOUS_ARCHIVE) as archive:
        archive.extractall(root, filter="data")
    (root / "esxi_configdrive").rename(root / "esxi_configdrive_previous")
    return root


class Fleet:
    def __init__(self, sim: Vcsim, env: dict, tmp: Path) -> None:
        self.sim, self.env, self.tmp = sim, env, tmp

    def batch(self, command_line: list[str], command: str, lines: list[dict], concurrency: int) -> dict:
        """Run one batch; its seconds, requests (harness-counted), peak RSS (KiB) and results."""
        path = self.tmp / f"{command}.jsonl"
        path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        out = self.tmp / "out.jsonl"
        latency = self.sim.faults().get("latency_ms", 0)
        self.sim.reset_faults()  # counters to zero
        self.sim.set_faults(latency_ms=latency)
        t0 = time.perf_counter()
        with open(out, "w") as stdout:
            proc = subprocess.Popen([*command_line, command, "--batch", str(path), "--concurrency", str(concurrency)],
                                    env=self.env, stdout=stdout, stderr=subprocess.PIPE)  # fmt: skip
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - t0
        counters = self.sim.counters()
        results = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
        failed = [r for r in results if "error" in r]
        if os.waitstatus_to_exitcode(status) != 0 or failed or len(results) != len(lines):
            raise SystemExit(f"{command} batch failed: {failed[:3]} {proc.stderr.read()[-2000:]}")
        requests = counters["soap_calls"] + sum(counters["folder_requests"].values())
        return {"seconds": seconds, "requests": requests, "rss": usage.ru_maxrss, "n": len(lines)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms-per-host", type=int, default=100, help="vcsim -vms (200 VMs at 100)")
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()

    with Vcsim(vms=args.vms_per_host) as sim, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        si = connect(sim)
        try:
            names = sorted(r["name"] for r in retrieve(si, vim.VirtualMachine, ["name"]))
        finally:
            disconnect(si)
        env = {**os.environ, "GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
               "GOVC_TLS_CA_CERTS": sim.ca_file}  # fmt: skip
        fleet = Fleet(sim, env, tmp)
        attach = [{"vm": n, "vmdata": vmdata(i)} for i, n in enumerate(names)]
        rotate = [{"vm": n, "password": f"Rotated-pw-{i}"} for i, n in enumerate(names)]
        remove = [{"vm": n} for n in names]
        tools = {"0.1.0": cli(unpack_previous(tmp)), "current": cli(None)}
        print(f"fleet: {len(names)} VMs in vcsim, {args.latency_ms:.0f} ms injected per request")

        # memory: a quarter of the fleet, then all of it (no latency: memory does not depend on it)
        quarter = len(names) // 4
        rss_quarter = fleet.batch(tools["current"], "attach", attach[:quarter], 8)["rss"]
        fleet.batch(tools["current"], "remove", remove[:quarter], 8)
        rss_all = fleet.batch(tools["current"], "attach", attach, 8)["rss"]
        fleet.batch(tools["current"], "remove", remove, 8)

        rows = {}
        for concurrency in args.concurrency:
            for tool, command_line in tools.items():
                sim.set_faults(latency_ms=args.latency_ms)
                a = fleet.batch(command_line, "attach", attach, concurrency)
                u = fleet.batch(command_line, "update", rotate, concurrency)
                sim.set_faults(latency_ms=0)
                fleet.batch(tools["current"], "remove", remove, 32)
                rows[(tool, concurrency)] = (a, u)

    print(f"{'tool':<9}{'concurrency':>12}{'attach VMs/s':>14}{'req/VM':>8}{'update VMs/s':>14}{'req/VM':>8}")
    for (tool, c), (a, u) in rows.items():
        print(f"{tool:<9}{c:>12}{a['n'] / a['seconds']:>14.1f}{a['requests'] / a['n']:>8.2f}"
              f"{u['n'] / u['seconds']:>14.1f}{u['requests'] / u['n']:>8.2f}")  # fmt: skip
    ok = True
    if ("current", GOAL_CONCURRENCY) in rows:
        a, u = rows[("current", GOAL_CONCURRENCY)]
        for command, result in (("attach", a), ("update", u)):
            per_vm = result["requests"] / result["n"]
            met = per_vm <= GOALS[command]
            ok &= met
            print(f"goal {command}: <= {GOALS[command]} requests per VM at concurrency {GOAL_CONCURRENCY}: "
                  f"{per_vm:.2f} ({'met' if met else 'MISSED'})")  # fmt: skip
    current = sorted((c, rows[("current", c)]) for t, c in rows if t == "current")
    for (c1, (a1, u1)), (c2, (a2, u2)) in zip(current, current[1:]):
        gain = (a1["seconds"] + u1["seconds"]) / (a2["seconds"] + u2["seconds"])
        print(f"throughput concurrency {c2} / {c1}: {gain:.1f}x")
    print(f"peak RSS of the CLI: {rss_quarter / 1024:.1f} MiB for {quarter} VMs, {rss_all / 1024:.1f} MiB for "
          f"{len(names)} VMs")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

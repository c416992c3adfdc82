"""A fleet: attach then update (password rotation) on every VM of a simulator holding 200 VMs, with the real CLI in
batch mode, at concurrency 1 and 8, with an injected per-request latency (vcsim answers in microseconds on
loopback; a real vCenter takes tens of milliseconds per call). Prints throughput, the ratio, and the CLI's peak
memory for a quarter of the fleet and for all of it (it should not grow with the number of VMs).

Run: .venv/bin/python benchmarks/bench_fleet.py [--vms-per-host 100] [--latency-ms 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from pyVmomi import vim  # noqa: E402
from vsphere_harness import Vcsim, connect, disconnect, retrieve  # noqa: E402

CLI = [str(ROOT / ".venv/bin/python"), "-m", "esxi_configdrive.cli"]


def vmdata(i: int) -> dict:
    return {"metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}", "local-hostname": f"node-{i}"},
            "userdata": f"#cloud-config\n# node {i}\n", "password": f"First-pw-{i}"}  # fmt: skip


def run_batch(env: dict, command: str, lines: list[dict], concurrency: int, tmp: Path) -> tuple[float, int, list]:
    """Run the CLI in batch mode; returns (seconds, peak RSS of that CLI process in KiB, results)."""
    path = tmp / f"{command}-{concurrency}-{len(lines)}.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp / "out.jsonl"
    t0 = time.perf_counter()
    with open(out, "w") as stdout:
        proc = subprocess.Popen([*CLI, command, "--batch", str(path), "--concurrency", str(concurrency)],
                                env=env, stdout=stdout, stderr=subprocess.PIPE)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    seconds = time.perf_counter() - t0
    results = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    failed = [r for r in results if "error" in r]
    if os.waitstatus_to_exitcode(status) != 0 or failed or len(results) != len(lines):
        raise SystemExit(f"{command} batch failed: {failed[:3]} {proc.stderr.read()[-2000:]}")
    return seconds, usage.ru_maxrss, results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms-per-host", type=int, default=100, help="vcsim -vms (200 VMs at 100)")
    ap.add_argument("--latency-ms", type=float, default=30)
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
        attach = [{"vm": n, "vmdata": vmdata(i)} for i, n in enumerate(names)]
        rotate = [{"vm": n, "password": f"Rotated-pw-{i}"} for i, n in enumerate(names)]
        remove = [{"vm": n} for n in names]
        print(f"fleet: {len(names)} VMs in vcsim, {args.latency_ms:.0f} ms injected per request")

        # memory: a quarter of the fleet, then all of it (no latency: memory does not depend on it)
        quarter = len(names) // 4
        _, rss_quarter, _ = run_batch(env, "attach", attach[:quarter], 8, tmp)
        run_batch(env, "remove", remove[:quarter], 8, tmp)
        _, rss_all, _ = run_batch(env, "attach", attach, 8, tmp)
        run_batch(env, "remove", remove, 8, tmp)

        sim.set_faults(latency_ms=args.latency_ms)
        rows = {}
        for concurrency in (1, 8):
            t_attach, _, _ = run_batch(env, "attach", attach, concurrency, tmp)
            t_update, _, _ = run_batch(env, "update", rotate, concurrency, tmp)
            rows[concurrency] = (t_attach, t_update)
            sim.set_faults(latency_ms=0)
            run_batch(env, "remove", remove, 8, tmp)
            sim.set_faults(latency_ms=args.latency_ms)

    n = len(names)
    print(f"{'concurrency':<12}{'attach':>16}{'update':>16}{'attach+update':>16}")
    for c, (ta, tu) in rows.items():
        print(f"{c:<12}{n / ta:>10.1f} VMs/s{n / tu:>10.1f} VMs/s{2 * n / (ta + tu):>10.1f} VMs/s")
    ratio = sum(rows[1]) / sum(rows[8])
    print(f"ratio concurrency 8 / 1: {ratio:.1f}x (goal: at least 4x)")
    print(f"peak RSS of the CLI: {rss_quarter / 1024:.1f} MiB for {quarter} VMs, {rss_all / 1024:.1f} MiB for {n} VMs")
    return 0 if ratio >= 4 else 1


if __name__ == "__main__":
    sys.exit(main())

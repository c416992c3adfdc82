"""audit at two fleet sizes: the real CLI (`esxi-configdrive audit`, login to logout) against vcsim holding 20 and
200 VMs, every one with a config drive, without and with an injected latency per request. Prints the requests
the harness counted (by method) and the wall time side by side: the requests must be the same at both sizes
(paging aside: the VMs' facts are read 100 VMs a call), the time may grow only with the bytes read. `--verify`
(one GET per drive) is shown for comparison: it is the part whose cost is per VM.

Run: .venv/bin/python benchmarks/bench_audit.py [--sizes 10 100] [--latency-ms 30]
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

from esxi_configdrive.vsphere.fleet import PAGE  # noqa: E402

CLI = [str(ROOT / ".venv/bin/python"), "-m", "esxi_configdrive.cli"]
LOGIN = {"RetrieveServiceContent", "Login", "Fetch", "Logout"}  # every command's, not the audit's


def vmdata(i: int) -> dict:
    return {"metadata": {"vm-id": f"00000000-0000-4000-8000-{i:012d}", "local-hostname": f"node-{i}"},
            "userdata": f"#cloud-config\n# node {i}\n"}  # fmt: skip


def attach_all(sim: Vcsim, env: dict, tmp: Path) -> int:
    si = connect(sim)
    try:
        names = sorted(r["name"] for r in retrieve(si, vim.VirtualMachine, ["name"]))
    finally:
        disconnect(si)
    batch = tmp / "attach.jsonl"
    batch.write_text("".join(json.dumps({"vm": n, "vmdata": vmdata(i)}) + "\n" for i, n in enumerate(names)))
    subprocess.run([*CLI, "attach", "--batch", str(batch), "--concurrency", "8"], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return len(names)


def audit(sim: Vcsim, env: dict, latency_ms: float, *args: str) -> tuple[float, dict[str, int], int, int]:
    """One CLI audit: (seconds, the audit's SOAP calls by method, /folder requests, rows that are ok)."""
    sim.reset_faults()
    sim.set_faults(latency_ms=latency_ms)
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, "audit", "--json", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"audit failed ({proc.returncode}): {proc.stdout[-1000:]} {proc.stderr[-1000:]}")
    counters = sim.counters()
    calls = {m: n for m, n in counters["soap_by_method"].items() if m not in LOGIN}
    ok = sum(json.loads(line)["state"] == "ok" for line in proc.stdout.splitlines())
    return seconds, calls, sum(counters["folder_requests"].values()), ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="vcsim -vms (2 x this many VMs)")
    ap.add_argument("--latency-ms", type=float, default=30)
    args = ap.parse_args()
    rows = []
    for size in args.sizes:
        with Vcsim(vms=size) as sim, tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "GOVC_URL": sim.url, "GOVC_USERNAME": sim.username, "GOVC_PASSWORD": sim.password,
                   "GOVC_TLS_CA_CERTS": sim.ca_file}  # fmt: skip
            vms = attach_all(sim, env, Path(tmp))
            for latency, extra in ((0.0, ()), (args.latency_ms, ()), (args.latency_ms, ("--verify",))):
                seconds, calls, http, ok = audit(sim, env, latency, *extra)
                if ok != vms:
                    raise SystemExit(f"{vms} VMs but {ok} ok rows")
                rows.append((vms, latency, " ".join(extra) or "-", sum(calls.values()), http, seconds, calls))
    print(f"{'VMs':>5} {'latency':>8} {'option':>9} {'SOAP':>5} {'/folder':>8} {'seconds':>8}  SOAP calls by method")
    for vms, latency, option, soap, http, seconds, calls in rows:
        methods = ", ".join(f"{m} {n}" for m, n in sorted(calls.items()))
        print(f"{vms:>5} {latency:>6.0f}ms {option:>9} {soap:>5} {http:>8} {seconds:>8.2f}  {methods}")
    print("(SOAP: the audit's own calls, after RetrieveServiceContent, Login, Fetch and before Logout)")
    return 0 if constant(rows) else 1


def constant(rows: list[tuple]) -> bool:
    """The goal: at each latency and option, the larger fleet costs the smaller one's calls, plus one
    RetrievePropertiesEx per extra page of VM facts."""
    ok = True
    for key in {(r[1], r[2]) for r in rows}:
        same = sorted((r for r in rows if (r[1], r[2]) == key), key=lambda r: r[0])
        small, large = same[0], same[-1]
        pages = -(-large[0] // PAGE) - -(-small[0] // PAGE)
        if large[3] != small[3] + pages:
            print(f"goal missed: {large[0]} VMs cost {large[3]} calls, {small[0]} VMs {small[3]} (+{pages} pages)")
            ok = False
    return ok


if __name__ == "__main__":
    sys.exit(main())

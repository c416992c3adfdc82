"""Building drives: the tool in process against the pipeline nova and CloudStack use (write the tree to a temporary
folder, run genisoimage with their flags, read the ISO back), same content, alternating runs; and the cold start
of ``esxi-configdrive build`` as a whole process.

The tool is timed twice per drive: as in a batch (the drive before had the same layout, so its pycdlib tree is
refilled) and as the first drive of a layout (a fresh pycdlib tree). The goal, at least 3x, is checked on the
batch figure, the way drives are built when there are many; the other ratio is printed beside it.

Run: .venv/bin/python benchmarks/bench_build.py [drives] [--where]
  --where  also print where a build's time goes (shares of pycdlib's calls under cProfile), fresh and refilled
"""

from __future__ import annotations

import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esxi_configdrive import VmData, build_iso  # noqa: E402
from esxi_configdrive import iso as iso_module  # noqa: E402
from esxi_configdrive.layout import FileTree, build_tree  # noqa: E402

GENISOIMAGE = ["genisoimage", "-ldots", "-allow-lowercase", "-allow-multidot", "-cache-inodes", "-l", "-quiet",
               "-J", "-r", "-V", "config-2"]  # fmt: skip  # CloudStack's flags (nova's plus -cache-inodes)


def drive(i: int) -> VmData:
    data = VmData.from_file(ROOT / "examples/vm.json")
    data.metadata["vm-id"] = f"00000000-0000-4000-8000-{i:012d}"
    data.metadata["local-hostname"] = f"node-{i}"
    data.password = f"Passw0rd-{i}"
    return data


def genisoimage_pipeline(tree: FileTree) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "drive")
        for path, content in tree.files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        for path, source in tree.links.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            os.link(root / source, root / path)
        out = Path(tmp, "drive.iso")
        subprocess.run([*GENISOIMAGE, "-o", str(out), str(root)], check=True, capture_output=True)
        return out.read_bytes()


def fresh_build_iso(data: VmData) -> bytes:
    """build_iso as for the first drive of a layout: no pycdlib tree kept from an earlier build."""
    iso_module._LAYOUTS.clear()
    return build_iso(data)


def bench_build(n: int) -> float:
    batch, fresh, theirs = [], [], []
    build_iso(drive(n))  # imports pycdlib
    for i in range(n):
        data = drive(i)
        t0 = time.perf_counter()
        genisoimage_pipeline(build_tree(data))  # the tree is the same content; building it is cheap either way
        t1 = time.perf_counter()
        fresh_build_iso(drive(n + i))  # another drive of the same layout
        t2 = time.perf_counter()
        build_iso(data)  # refills the layout the previous build left, as a batch does
        t3 = time.perf_counter()
        theirs.append(t1 - t0)
        fresh.append(t2 - t1)
        batch.append(t3 - t2)
    a, f, b = statistics.median(batch), statistics.median(fresh), statistics.median(theirs)
    print(f"build, {n} drives, alternating, median per drive:")
    print(f"  esxi-configdrive build_iso, in a batch (pycdlib tree refilled): {a * 1000:7.2f} ms")
    print(f"  esxi-configdrive build_iso, first drive of a layout:            {f * 1000:7.2f} ms")
    print(f"  tree on disk + genisoimage + read back:                         {b * 1000:7.2f} ms")
    print(f"  ratio: {b / a:.1f}x faster in a batch (goal: at least 3x); {b / f:.1f}x for a layout's first drive")
    return b / a


WHERE = ("new", "add_directory", "add_fp", "add_hard_link", "update_file_contents_fp", "write_fp")


def where_time_goes(n: int = 100) -> None:
    """Shares of one build's time by pycdlib entry point, fresh and refilled (cProfile slows small calls most, so
    read these as shares, not times)."""
    for label, build in (("first drive of a layout", fresh_build_iso), ("in a batch", build_iso)):
        drives = [drive(i) for i in range(n)]
        profile = cProfile.Profile()
        profile.runcall(lambda: [build(data) for data in drives])  # noqa: B023
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        total = sum(tt for (_file, _line, _name), (_cc, _nc, tt, _ct, _callers) in stats.items())
        spent = {name: 0.0 for name in WHERE}
        for (file, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
            if file.endswith(os.path.join("pycdlib", "pycdlib.py")) and name in spent:
                spent[name] += cumulative
        rest = total - sum(spent.values())
        shares = (
            ", ".join(f"{name} {t / total:.0%}" for name, t in spent.items() if t) + f", the rest {rest / total:.0%}"
        )
        print(f"where a build's time goes, {label} ({total / n * 1000:.1f} ms per drive under cProfile): {shares}")


def bench_cold_start(runs: int = 15) -> float:
    exe = ROOT / ".venv/bin/esxi-configdrive"
    with tempfile.TemporaryDirectory() as tmp:
        pw = Path(tmp, "pw")
        pw.write_text("Passw0rd-cold\n")
        cmd = [str(exe), "build", "--vmdata", str(ROOT / "examples/vm.json"), "--password-file", str(pw),
               "-o", str(Path(tmp, "out.iso"))]  # fmt: skip
        subprocess.run(
            cmd, check=True, capture_output=True
        )  # warm the page cache, as any second run of a command would be
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        probe = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c",
             "import sys; from esxi_configdrive.cli import main; main(sys.argv[1:]); "
             "print('pyVmomi' in sys.modules, file=sys.stderr)", *cmd[1:]],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    med = statistics.median(times)
    print(f"cold start of `esxi-configdrive build` (whole process), median of {runs}: {med * 1000:.0f} ms "
          f"(goal: under 250 ms); pyVmomi imported: {probe.stderr.strip()}")  # fmt: skip
    return med


def main() -> int:
    if shutil.which("genisoimage") is None:
        print("genisoimage is needed for the baseline (apt-get install genisoimage)")
        return 1
    args = [a for a in sys.argv[1:] if a != "--where"]
    n = int(args[0]) if args else 200
    ratio = bench_build(n)
    if "--where" in sys.argv[1:]:
        where_time_goes()
    cold = bench_cold_start()
    return 0 if ratio >= 3 and cold < 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The boot watcher stops a hung or crashed guest early, leaves a slow one alone, and a boot that crashed is run again
from the disk as it was (no QEMU: a shell stands in for it)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import guest_harness
import pytest
from guest_harness import LOCKUP_GIVE_UP, GuestDisk, GuestImage, _run_watched, guest_required


def fake_guest(console: Path, lines: list[str], then_sleep: float) -> list[str]:
    """A process that writes ``lines`` to the console file, as QEMU's serial file does, then runs on."""
    text = "".join(f"{line}\n" for line in lines)
    return ["sh", "-c", f"printf '%s' \"$0\" >'{console}'; sleep {then_sleep}", text]


def test_a_long_soft_lockup_stops_the_boot(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(guest_harness, "WATCH_INTERVAL", 0.2)
    console = tmp_path / "console.log"
    lines = [f"[  536.578806] watchdog: BUG: soft lockup - CPU#0 stuck for {LOCKUP_GIVE_UP + 5}s! [systemd:1]"]
    started = time.monotonic()
    run = _run_watched(fake_guest(console, lines, 60), console, timeout=60)
    assert run.stopped is not None and "soft lockup" in run.stopped and f"{LOCKUP_GIVE_UP + 5} s" in run.stopped
    assert run.emulator_fault
    assert run.returncode != 0  # killed, not finished
    assert time.monotonic() - started < 30


def test_short_lockup_reports_do_not_stop_a_boot(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(guest_harness, "WATCH_INTERVAL", 0.2)
    console = tmp_path / "console.log"
    lines = ["[   40.1] watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [systemd-udevd:180]", "GUESTCHECK done"]
    run = _run_watched(fake_guest(console, lines, 1.5), console, timeout=60)
    assert run.stopped is None and not run.emulator_fault
    assert run.returncode == 0
    assert run.console.endswith("GUESTCHECK done\n")


def test_a_guest_that_never_powers_off_is_stopped_at_the_timeout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(guest_harness, "WATCH_INTERVAL", 0.2)
    console = tmp_path / "console.log"
    run = _run_watched(fake_guest(console, ["booting"], 60), console, timeout=1)
    assert run.stopped == "did not power off within 1 s"
    assert not run.emulator_fault  # a slow guest is a test failure, not one to retry
    assert run.returncode != 0


def test_a_kernel_panic_stops_the_boot(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(guest_harness, "WATCH_INTERVAL", 0.2)
    console = tmp_path / "console.log"
    lines = ["[   29.047009] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
             "[   29.051711] Kernel panic - not syncing: Fatal exception in interrupt"]  # fmt: skip
    run = _run_watched(fake_guest(console, lines, 60), console, timeout=60)
    assert run.stopped == "crashed: kernel panic (Fatal exception in interrupt)"
    assert run.emulator_fault
    assert run.returncode != 0


FAKE_QEMU = """#!/bin/sh
# Stands in for qemu-system-x86_64: the first boot scribbles on the VM's disk and panics, the next one succeeds.
for arg; do
  case "$arg" in
    file:*) console=${arg#file:} ;;
    file=*qcow2,*) disk=${arg#file=}; disk=${disk%%,*} ;;
  esac
done
n=$(cat "$STATE" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" >"$STATE"
cp "$disk" "$STATE.seen-$n"
if [ "$n" = 1 ]; then
  echo half-written >>"$disk"
  echo "[   29.05] Kernel panic - not syncing: Fatal exception in interrupt" >"$console"
  exec sleep 60
fi
echo "GUESTCHECK done" >"$console"
"""


def test_a_boot_that_panics_is_run_again_from_the_disk_as_it_was(tmp_path: Path, monkeypatch) -> None:
    if shutil.which("qemu-img") is None:  # the disk is a real qcow2 overlay
        (pytest.fail if guest_required() else pytest.skip)("needs qemu-img (apt: qemu-utils)")
    monkeypatch.setattr(guest_harness, "WATCH_INTERVAL", 0.2)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "qemu-system-x86_64"
    fake.write_text(FAKE_QEMU)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STATE", str(tmp_path / "calls"))
    report: dict[str, str] = {}
    monkeypatch.setattr(guest_harness, "REPORT", report)  # not the session's guest timings
    base = tmp_path / "image"
    base.mkdir()
    (base / "image.raw").write_bytes(b"\0" * 1024 * 1024)
    disk = GuestDisk(GuestImage(base, "bookworm"), tmp_path / "vm.qcow2", "tcg")
    boot = disk.boot(None)
    assert "GUESTCHECK done" in boot.console
    assert (tmp_path / "calls").read_text().strip() == "2"
    # the second try saw the disk as it was before the first one wrote to it
    assert (tmp_path / "calls.seen-2").read_bytes() == (tmp_path / "calls.seen-1").read_bytes()
    assert not (tmp_path / "vm-before-boot.qcow2").exists()
    assert "kernel panic" in report["bookworm: vm VM, boot 1 (ide, tcg), try 1"]

"""The boot watcher stops a hung guest early and leaves a slow one alone (no QEMU: a shell stands in for it)."""

from __future__ import annotations

import time
from pathlib import Path

import guest_harness
from guest_harness import LOCKUP_GIVE_UP, _run_watched


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

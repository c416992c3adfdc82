"""What an operation returns: an ``Outcome`` (data: the steps it made or would make, the ISO the drive points at)
and, at the edge, the ``Result`` the Python API and the command line have always given."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigDriveError, FileKept, describe_failure
from .effects import Step


@dataclass
class Outcome:
    vm: str
    steps: list[Step] = field(default_factory=list)
    iso: str | None = None
    sha256: str | None = None  # of the ISO a reconfigure pointed the drive at
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.steps)


@dataclass
class Result:
    """What an operation did (or, with dry_run, would do). ``actions`` are ``steps`` described."""

    vm: str
    changed: bool
    actions: list[str] = field(default_factory=list)
    dry_run: bool = False
    iso: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, outcome: Outcome, dry_run: bool) -> Result:
        extra = dict(outcome.extra)
        if outcome.sha256 and not dry_run:
            extra["sha256"] = outcome.sha256
        if outcome.warnings:
            extra["warnings"] = list(outcome.warnings)
        actions = [step.describe() for step in outcome.steps]
        return cls(outcome.vm, outcome.changed, actions, dry_run, outcome.iso, extra, list(outcome.steps))

    @property
    def pending(self) -> list[Any]:
        """Deletes sent and not confirmed yet (batch mode): ``settled()`` waits for them."""
        return [step.pending for step in self.steps if step.pending is not None]

    def settled(self, timeout: float | None = None) -> Result:
        """This result once its pending deletes are confirmed: a delete that found nothing leaves the steps;
        a failed one raises its fault (the drive was swapped and is complete; the record names the old file,
        which the next run deletes)."""
        if not self.pending:
            return self
        kept: list[str] = []
        steps = [replace(step, pending=None) for step in self.steps if _confirmed(step, timeout, kept)]
        extra = dict(self.extra)
        if kept:
            extra["warnings"] = [*extra.get("warnings", []), *kept]
        return Result(self.vm, any(s.changed for s in steps), [s.describe() for s in steps], self.dry_run,
                      self.iso, extra, steps)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"vm": self.vm, "changed": self.changed}
        if self.dry_run:
            out["dry_run"] = True
        out["actions"] = list(self.actions)
        if self.iso is not None:
            out["iso"] = self.iso
        out.update(self.extra)
        return out


def _confirmed(step: Step, timeout: float | None, kept: list[str]) -> bool:
    """The delete happened; a file vSphere kept (locked) is a warning, since the record still names it."""
    if step.pending is None:
        return True
    try:
        return step.pending.result(timeout) is True
    except FileKept as e:
        kept.append(str(e))
        return False
    except Exception as e:
        raise ConfigDriveError(
            f"{describe_failure(e)[0]} while deleting {step.target}; the drive is attached and complete, and the "
            "next run deletes the old file"
        ) from e

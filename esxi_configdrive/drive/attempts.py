"""Running an operation against a VM that others may change at the same time.

Every ReconfigVM carries the changeVersion its plan was read at; when another client changed the VM meanwhile,
vSphere refuses it (Stale) and the operation starts again from a fresh read, each attempt with effects of its
own. An attempt that lost keeps its upload: the next one usually writes the same name again (names follow the
content). When it does not (an update built on content another client changed meanwhile), the upload is
deleted at the end, unless the VM uses it. After an unknown outcome nothing is cleaned up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import ConfigDriveError, OutcomeUnknown, Stale
from ..vsphere_values import DatastorePath
from .effects import Effects
from .result import Outcome

log = logging.getLogger(__name__)


def run_attempts(
    attempt: Callable[[Effects], Outcome], new_effects: Callable[[], Effects], max_attempts: int
) -> Outcome:
    leftovers: list[DatastorePath] = []
    try:
        for n in range(1, max_attempts + 1):
            effects = new_effects()
            try:
                outcome = attempt(effects)
            except Stale as e:
                log.info("the VM changed while we planned (attempt %d: %s); reading it again", n, e)
                leftovers += effects.uploads
                continue
            _discard(new_effects(), leftovers, keep=outcome.iso)
            outcome.warnings += effects.warnings
            return outcome
    except OutcomeUnknown:
        raise  # a reconfigure may still be attaching one of the uploads: leave them to the re-run
    except Exception:
        _discard(new_effects(), leftovers, keep=None)
        raise
    _discard(new_effects(), leftovers, keep=None)
    raise ConfigDriveError(f"the VM kept changing under us; gave up after {max_attempts} attempts")


def _discard(effects: Effects, leftovers: list[DatastorePath], keep: str | None) -> None:
    for path in dict.fromkeys(leftovers):  # attempts often wrote the same name
        if str(path) != keep:
            effects.discard_unused(path)

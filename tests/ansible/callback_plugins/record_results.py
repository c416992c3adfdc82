"""An Ansible callback for the playbook tests: every task result, as the modules returned it, one JSON line per
result in the file named by ``$RECORD_RESULTS_FILE`` (the normal screen output is left as it is)."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, result: Any, status: str) -> None:
        data = getattr(result, "result", None)
        if data is None:  # ansible-core before 2.19
            data = result._result
        line = {"task": result.task_name, "status": status, "result": data}
        with open(os.environ["RECORD_RESULTS_FILE"], "a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, "unreachable")

"""Workflow Builder steps in the stand-in (mixed into :class:`sandbox.webapi.SlackWebAPI`).

:meth:`FunctionsMixin.start_function` is Workflow Builder reaching an app's step: it opens an
execution (the driver then sends ``function_executed``). ``functions.completeSuccess`` and
``functions.completeError`` end it once, as Slack does: a second completion gets
``execution_not_in_running_state``, an unknown id ``function_execution_not_found``, and
outputs missing a declared output ``parameter_validation_failed``.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from sandbox.methods import err


class FunctionsMixin:
    FUNCTION_METHODS = {"functions.completeSuccess": "m_functions_complete_success",
                        "functions.completeError": "m_functions_complete_error"}

    def _reset_functions(self) -> None:
        self._executions: dict[str, dict] = {}

    def start_function(self, callback_id: str, inputs: dict,
                       outputs: tuple[str, ...] = ()) -> str:
        """A running execution of the step ``callback_id``; ``outputs``: its declared output
        names (each must be in a completeSuccess's outputs)."""
        execution_id = "Fx" + secrets.token_hex(5).upper()
        with self._lock:
            self._executions[execution_id] = {
                "callback_id": callback_id, "inputs": copy.deepcopy(inputs),
                "declared": list(outputs), "state": "running", "outputs": None,
                "error": None}
            self._bump()
        return execution_id

    def execution(self, execution_id: str) -> dict | None:
        with self._lock:
            found = self._executions.get(execution_id)
            return copy.deepcopy(found) if found else None

    def _running(self, p: dict) -> dict | tuple[str, dict]:
        execution = self._executions.get(p.get("function_execution_id") or "")
        if execution is None:
            return err("function_execution_not_found")
        if execution["state"] != "running":
            return err("execution_not_in_running_state")
        return p["function_execution_id"], execution

    def m_functions_complete_success(self, p: dict) -> dict:
        found = self._running(p)
        if isinstance(found, dict):
            return found
        _, execution = found
        outputs: Any = p.get("outputs")
        if not isinstance(outputs, dict) or any(o not in outputs for o in execution["declared"]):
            return err("parameter_validation_failed")
        execution.update(state="completed", outputs=copy.deepcopy(outputs))
        return {"ok": True}

    def m_functions_complete_error(self, p: dict) -> dict:
        found = self._running(p)
        if isinstance(found, dict):
            return found
        if not isinstance(p.get("error"), str) or not p["error"]:
            return err("invalid_arguments")
        found[1].update(state="failed", error=p["error"])
        return {"ok": True}

"""Workflow Builder steps (Bolt custom functions): `function_executed` for each step of
`workflows.workflow_steps`, acked at once; the step runs after the ack, and its completion
or failure is delivered by the outbox, once."""

from __future__ import annotations

import logging

from slack_bolt import BoltContext

from handlers.common import describe_error
from handlers.deps import deps_of
from workflows import workflow_steps
from workflows.errors import database_unavailable

log = logging.getLogger("o2c.handlers.workflow_steps")
CALLBACK_IDS = tuple(workflow_steps.STEPS)


def function_executed(event: dict, context: BoltContext) -> None:
    """Run the step; when it fails with something that is not a refusal (those fail the step
    in `run_step`), fail it with a reference to the log (`describe_error`: no detail shown),
    so the person who ran the workflow is told instead of it waiting until Slack gives up.
    An unreachable database is left to the app's error handler: nothing can be written."""
    deps = deps_of(context)
    run = workflow_steps.StepRun(execution_id=event["function_execution_id"],
                                 callback_id=(event.get("function") or {}).get("callback_id", ""),
                                 inputs=event.get("inputs") or {})
    try:
        with deps.db.transaction() as session:
            workflow_steps.run_step(session, run, now=deps.clock.now())
    except Exception as error:
        if database_unavailable(error):
            raise
        message = describe_error(error, log, plain=True)  # logged once, with its reference
        with deps.db.transaction() as session:
            workflow_steps.fail_unexpectedly(session, run.execution_id, message)
    deps.notify_outbox()

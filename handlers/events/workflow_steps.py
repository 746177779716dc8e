"""Workflow Builder steps (Bolt custom functions): `function_executed` for each step of
`workflows.workflow_steps`, acked at once; the step runs after the ack, and its completion
or failure is delivered by the outbox, once."""

from __future__ import annotations

from slack_bolt import BoltContext

from handlers.deps import deps_of
from workflows import workflow_steps

CALLBACK_IDS = tuple(workflow_steps.STEPS)


def function_executed(event: dict, context: BoltContext) -> None:
    deps = deps_of(context)
    run = workflow_steps.StepRun(execution_id=event["function_execution_id"],
                                 callback_id=(event.get("function") or {}).get("callback_id", ""),
                                 inputs=event.get("inputs") or {})
    with deps.db.transaction() as session:
        workflow_steps.run_step(session, run, now=deps.clock.now())
    deps.notify_outbox()

"""Workflow Builder steps (Bolt custom functions) through signed `function_executed` events
against the real server and the Slack stand-in: each completed or failed exactly once."""

from __future__ import annotations

from sqlmodel import select

from models import AuditEvent, CreditRequest
from tests.support import factories as f
from workflows import workflow_steps as steps

CREDIT_OUTPUTS = ("decision", "approver", "note")


def books(server) -> None:
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-GLOBEX", "Globex Corporation", collector="UCOLL001",
                   sales_rep="USALES01")
        f.invoice(s, "INV-2026-000501", total="700.00")


def finished(standin, execution_id: str) -> dict:
    return standin.api.wait_for(
        lambda: (e := standin.api.execution(execution_id)) and e["state"] != "running" and e)


def completions(standin) -> list:
    return [c for c in standin.api.calls if c.method.startswith("functions.")]


def test_request_credit_approval_completes_when_the_card_is_decided(
        server, slack, standin) -> None:
    # given
    books(server)
    # when: a workflow asks for credit approval
    execution, answer = slack.function_executed(
        steps.REQUEST_CREDIT, {"customer": "globex", "amount": "2500.00",
                               "reason": "big <!channel> order", "requested_by": "USALES01"},
        outputs=CREDIT_OUTPUTS)
    assert answer.status_code == 200
    # then: a card in the approvals channel, the step still running
    card = standin.api.wait_for(lambda: [m for m in standin.api.messages("CAPPROVAL")
                                         if "Credit approval" in m["text"]] or None)[0]
    assert standin.api.execution(execution)["state"] == "running"
    assert "<!channel>" not in str(card["blocks"])
    # when: a credit approver approves it (and clicks twice)
    slack.click("UCREDIT1", card, "approval_approve")
    slack.click("UCREDIT1", card, "approval_approve")
    # then: the step completes once, with the decision
    done = finished(standin, execution)
    assert done["state"] == "completed"
    assert done["outputs"] == {"decision": "approved", "approver": "UCREDIT1", "note": ""}
    server.worker.drain()
    assert len(completions(standin)) == 1
    with server.db.read_session() as s:
        assert s.exec(select(CreditRequest)).one().status == "approved"


def test_balance_lookup_and_activity_log_complete_once_even_when_retried(
        server, slack, standin) -> None:
    books(server)
    # when: the balance step runs, and Slack sends the same execution again (a new event id)
    execution, _ = slack.function_executed(
        steps.BALANCE, {"customer": "C-GLOBEX", "requested_by": "USALES01"},
        outputs=("open_ar", "overdue", "credit_available"))
    slack.function_executed(steps.BALANCE, {"customer": "C-GLOBEX",
                                            "requested_by": "USALES01"},
                            execution_id=execution)
    # then
    done = finished(standin, execution)
    assert done["outputs"]["open_ar"] == "USD 700.00"
    # when: a collector logs a call through a workflow
    logged, _ = slack.function_executed(
        steps.LOG_ACTIVITY, {"customer": "Globex Corporation", "note": "promised Friday",
                             "requested_by": "UCOLL001"}, outputs=("activity_id",))
    assert finished(standin, logged)["state"] == "completed"
    server.worker.drain()
    assert len(completions(standin)) == 2


def test_bad_input_and_missing_roles_fail_the_step_with_a_message(server, slack,
                                                                   standin) -> None:
    books(server)
    # when: an amount that is not one, an unknown customer, someone without the role
    bad_amount, _ = slack.function_executed(
        steps.REQUEST_CREDIT, {"customer": "C-GLOBEX", "amount": "12,50", "reason": "x",
                               "requested_by": "USALES01"}, outputs=CREDIT_OUTPUTS)
    unknown, _ = slack.function_executed(
        steps.BALANCE, {"customer": "Nobody Ltd", "requested_by": "USALES01"})
    no_role, _ = slack.function_executed(
        steps.LOG_ACTIVITY, {"customer": "C-GLOBEX", "note": "hi", "requested_by": "USALES01"})
    # then: each failed, the message naming what is wrong; nothing stored; refusal audited
    assert finished(standin, bad_amount)["error"].startswith("amount:")
    assert finished(standin, unknown)["error"].startswith("customer:")
    assert "collector" in finished(standin, no_role)["error"]
    with server.db.read_session() as s:
        assert s.exec(select(CreditRequest)).all() == []
        assert s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.workflow.log_activity")).one().actor == "USALES01"

"""Workflow Builder steps (Bolt custom functions) through signed `function_executed` events
against the real server and the Slack stand-in: each completed or failed exactly once."""

from __future__ import annotations

from sqlmodel import select

from models import AuditEvent, CollectionActivity, CreditRequest, Customer
from tests.support import factories as f
from workflows import workflow_steps as steps
from workflows.invariants import validate_all

CREDIT_OUTPUTS = ("decision", "approver", "note", "credit_limit", "limit_raised")


def ran_by(user_id: str) -> dict:
    """A `slack#/types/user_context` input as Slack fills it: the person who ran the workflow."""
    return {"id": user_id, "secret": "c2VjcmV0LWZyb20tc2xhY2s="}


def books(server, credit_limit: str = "50000.00") -> None:
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-GLOBEX", "Globex Corporation", collector="UCOLL001",
                   sales_rep="USALES01", credit_limit=credit_limit)
        f.invoice(s, "INV-2026-000501", total="700.00")


def finished(standin, execution_id: str) -> dict:
    return standin.api.wait_for(
        lambda: (e := standin.api.execution(execution_id)) and e["state"] != "running" and e)


def completions(standin) -> list:
    return [c for c in standin.api.calls if c.method.startswith("functions.")]


def ask_credit(server, slack, standin, amount: str) -> tuple[str, dict]:
    """A workflow asks for credit approval: its execution id and the card it brought up."""
    seen = len(credit_cards(standin))
    execution, answer = slack.function_executed(
        steps.REQUEST_CREDIT, {"customer": "globex", "amount": amount,
                               "reason": "a bigger order", "requested_by": ran_by("USALES01")},
        outputs=CREDIT_OUTPUTS)
    assert answer.status_code == 200
    return execution, standin.api.wait_for(lambda: credit_cards(standin)[seen:] or None)[0]


def credit_cards(standin) -> list[dict]:
    return [m for m in standin.api.messages("CAPPROVAL") if "Credit approval" in m["text"]]


def credit_limit(server) -> int:
    with server.db.read_session() as s:
        return s.exec(select(Customer).where(Customer.external_id == "C-GLOBEX")
                      ).one().credit_limit_minor


def test_approving_a_credit_request_raises_the_limit_never_lowers_it(
        server, slack, standin) -> None:
    # given: a customer with a credit limit of USD 1,000.00
    books(server, credit_limit="1000.00")
    # when: a workflow asks for USD 2,500.00 and a credit approver approves it
    execution, card = ask_credit(server, slack, standin, "2500.00")
    slack.click("UCREDIT1", card, "approval_approve")
    # then: the step completes saying the limit is now USD 2,500.00
    done = finished(standin, execution)
    assert done["outputs"] == {"decision": "approved", "approver": "UCREDIT1", "note": "",
                               "credit_limit": "USD 2,500.00", "limit_raised": True}
    assert credit_limit(server) == 250000
    with server.db.read_session() as s:
        [change] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "customer.credit_limit_changed")).all()
        assert change.actor == "UCREDIT1"
        assert change.data["changes"] == {"credit_limit_minor": [100000, 250000]}
        assert validate_all(s) == []
    # when: a smaller amount is asked for and approved
    execution, card = ask_credit(server, slack, standin, "500.00")
    slack.click("UCREDIT1", card, "approval_approve")
    # then: the limit stays; the step says so
    done = finished(standin, execution)
    assert done["outputs"]["credit_limit"] == "USD 2,500.00"
    assert done["outputs"]["limit_raised"] is False
    assert credit_limit(server) == 250000


def test_request_credit_approval_completes_when_the_card_is_decided(
        server, slack, standin) -> None:
    # given
    books(server)
    # when: a workflow asks for credit approval
    execution, answer = slack.function_executed(
        steps.REQUEST_CREDIT, {"customer": "globex", "amount": "2500.00",
                               "reason": "big <!channel> order",
                               "requested_by": ran_by("USALES01")},
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
    assert done["outputs"] == {"decision": "approved", "approver": "UCREDIT1", "note": "",
                               "credit_limit": "USD 50,000.00", "limit_raised": False}
    server.worker.drain()
    assert len(completions(standin)) == 1
    with server.db.read_session() as s:
        assert s.exec(select(CreditRequest)).one().status == "approved"


def balance_twice(slack) -> str:
    """The balance step run for Globex by USALES01, and Slack sending that execution again (a
    new event id): its execution id."""
    execution, _ = slack.function_executed(
        steps.BALANCE, {"customer": "C-GLOBEX", "requested_by": ran_by("USALES01")},
        outputs=("open_ar", "overdue", "credit_available"))
    slack.function_executed(steps.BALANCE, {"customer": "C-GLOBEX",
                                            "requested_by": ran_by("USALES01")},
                            execution_id=execution)
    return execution


def test_balance_lookup_and_activity_log_complete_once_even_when_retried(
        server, slack, standin) -> None:
    books(server)
    # when: the balance step runs, and Slack sends the same execution again (a new event id)
    execution = balance_twice(slack)
    # then
    done = finished(standin, execution)
    assert done["outputs"]["open_ar"] == "USD 700.00"
    # when: a collector logs a call through a workflow
    logged, _ = slack.function_executed(
        steps.LOG_ACTIVITY, {"customer": "Globex Corporation", "note": "promised Friday",
                             "requested_by": ran_by("UCOLL001")}, outputs=("activity_id",))
    assert finished(standin, logged)["state"] == "completed"
    server.worker.drain()
    assert len(completions(standin)) == 2


def test_bad_input_and_missing_roles_fail_the_step_with_a_message(server, slack,
                                                                   standin) -> None:
    books(server)
    # when: an amount that is not one, an unknown customer, someone without the role
    bad_amount, _ = slack.function_executed(
        steps.REQUEST_CREDIT, {"customer": "C-GLOBEX", "amount": "12,50", "reason": "x",
                               "requested_by": ran_by("USALES01")}, outputs=CREDIT_OUTPUTS)
    unknown, _ = slack.function_executed(
        steps.BALANCE, {"customer": "Nobody Ltd", "requested_by": ran_by("USALES01")})
    no_role, _ = slack.function_executed(
        steps.LOG_ACTIVITY, {"customer": "C-GLOBEX", "note": "hi",
                             "requested_by": ran_by("USALES01")})
    # ... and a user id typed into the step when the workflow was built (the older manifest's
    # `user_id` input: anyone building a workflow could name an admin there)
    typed_in, _ = slack.function_executed(
        steps.LOG_ACTIVITY, {"customer": "C-GLOBEX", "note": "hi", "requested_by": "UCOLL001"})
    # then: each failed, the message naming what is wrong; nothing stored; refusal audited
    assert finished(standin, bad_amount)["error"].startswith("amount:")
    assert finished(standin, unknown)["error"].startswith("customer:")
    assert "collector" in finished(standin, no_role)["error"]
    assert finished(standin, typed_in)["error"].startswith("requested_by: must be the person")
    with server.db.read_session() as s:
        assert s.exec(select(CreditRequest)).all() == []
        assert s.exec(select(CollectionActivity)).all() == []
        assert s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.workflow.log_activity")).one().actor == "USALES01"


def test_a_step_failing_unexpectedly_fails_with_a_reference_instead_of_hanging(
        server, slack, standin, monkeypatch) -> None:
    books(server)

    def broken(session, run, now):
        raise RuntimeError("secret detail xoxb-not-for-users")

    # given: a step that fails with something that is not a refusal (a bug, a deadlock)
    monkeypatch.setitem(steps.STEPS, steps.BALANCE, broken)
    # when: a workflow runs it, and Slack sends the same execution again
    execution = balance_twice(slack)
    # then: the step fails (Workflow Builder tells the person) with a reference, not a
    # detail; it is not left running until Slack gives up
    done = finished(standin, execution)
    assert done["state"] == "failed"
    assert "something went wrong" in done["error"] and "ref" in done["error"]
    assert "secret detail" not in done["error"] and "xoxb" not in done["error"]
    server.worker.drain()
    assert len(completions(standin)) == 1


def test_the_customers_sales_rep_is_refused_on_a_credit_request_card(server, slack,
                                                                      standin) -> None:
    from tests.support.slack import ephemeral_texts

    # given Globex's sales rep also approves credit, and its collector's workflow asks for
    # a credit limit of USD 90,000.00
    books(server, credit_limit="1000.00")
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales", "credit_approver")
    execution, _ = slack.function_executed(
        steps.REQUEST_CREDIT, {"customer": "globex", "amount": "90000.00",
                               "reason": "a bigger order", "requested_by": ran_by("UCOLL001")},
        outputs=CREDIT_OUTPUTS)
    card = standin.api.wait_for(lambda: credit_cards(standin) or None)[0]
    # when the rep clicks Approve
    slack.click("USALES01", card, "approval_approve")
    # then they are told why not, the limit stays and the step still waits
    told = standin.api.wait_for(lambda: [t for t in ephemeral_texts(standin.api, "USALES01")
                                         if "sales rep" in t] or None)
    assert "Globex Corporation" in told[0] and "Nothing was changed" in told[0]
    assert credit_limit(server) == 100000
    assert standin.api.execution(execution)["state"] == "running"
    with server.db.read_session() as s:
        [refused] = s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused.approval.decide")).all()
        assert refused.actor == "USALES01"
    # when a credit approver approves it, the step completes with the new limit
    slack.click("UCREDIT1", card, "approval_approve")
    assert finished(standin, execution)["outputs"]["credit_limit"] == "USD 90,000.00"

"""Back-office decisions are taken exactly once across server processes (issue 14; SPEC §5.2):
two `o2c serve` processes share one database (PostgreSQL with O2C_TEST_DB=postgresql, else a
SQLite file); a credit-note approval card is clicked, and a dispute's Accept modal submitted,
concurrently through both, with replays. Both in one test: one pair of processes."""

from __future__ import annotations

import threading

from sqlmodel import func, select

from bot.clock import Clock
from models import (
    AuditEvent,
    CreditNote,
    CreditNoteRequest,
    Dispute,
    Invoice,
    OutboxMessage,
)
from sandbox.driver import FORM, SlackDriver
from tests.conftest import ADMIN, SIGNING_SECRET
from tests.e2e.test_approvals_multiprocess import WAIT, two_servers  # noqa: F401 - fixture
from tests.support import factories as f
from tests.support.slack import prepared_click, prepared_submission, text_of
from workflows import credit_notes


def _concurrently(drivers: list[SlackDriver], bodies: list[str]) -> list[tuple[int, str]]:
    """Send every body at once, alternately to each process: (status, answer) in order."""
    start = threading.Barrier(len(bodies))
    answers: list[tuple[int, str]] = [(0, "")] * len(bodies)

    def send(i: int) -> None:
        start.wait()
        response = drivers[i % 2].send(bodies[i], FORM)
        answers[i] = (response.status_code, response.text)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    return answers


def _count(db, model, *where) -> int:
    with db.read_session() as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def _seed(db) -> None:
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        for approver in ("UCREDIT1", "UCREDIT2", "UDISC001"):
            f.user(s, approver, "credit_approver")
        f.customer(s, "C-GLOBEX", "Globex", collector="UCOLL001", sales_rep="USALES01")
        f.invoice(s, "INV-2026-000101", total="1000.00")
        f.invoice(s, "INV-2026-000102", total="1000.00")


def test_back_office_decisions_through_two_processes_are_taken_once(
        two_servers, db, standin) -> None:  # noqa: F811
    """One pair of server processes (starting them is most of this test's time) for both
    decisions: a credit-note approval card clicked, then a dispute's Accept modal submitted."""
    api = standin.api
    _seed(db)
    drivers = [SlackDriver(f"{srv.url}/slack/events", SIGNING_SECRET, api=api)
               for srv in two_servers]
    a_credit_note_card_clicked_through_two_processes_issues_one_note(db, api, drivers)
    a_dispute_accepted_through_two_processes_is_resolved_once(db, api, drivers)


def a_credit_note_card_clicked_through_two_processes_issues_one_note(
        db, api, drivers: list[SlackDriver]) -> None:
    # given a credit note waiting for approval on INV-2026-000101
    with db.transaction() as s:
        credit_notes.request_credit_note(s, credit_notes.CreditNoteIn(
            invoice="INV-2026-000101", reason="damaged", amount="100.00"), actor="UCOLL001",
            now=Clock().now())
    card = api.wait_for(lambda: next((m for m in api.messages("CAPPROVAL")
                                      if m["text"].startswith("Credit note approval")), None),
                        WAIT, "the card")
    clickers = ["UCREDIT1", ADMIN, "UCREDIT2", "UDISC001", "UCREDIT1", ADMIN]
    bodies = [prepared_click(drivers[0], user, card, "approval_approve") for user in clickers]
    # when the clicks arrive at once, alternately at each process, and one is replayed at each
    assert [status for status, _ in _concurrently(drivers, bodies)] == [200] * len(bodies)
    for driver in drivers:
        driver.send(bodies[0], FORM, retry_num=1)
    # then (once every click's work after its ack is done: each loser and each replay was
    # told who decided) one credit note was issued, one decision audited, one e-mail queued
    api.wait_for(lambda: len(api.ephemerals()) >= len(bodies) + 1, WAIT, "the explanations")
    api.wait_for(lambda: "CN-" in text_of(api.message(card["channel"], card["ts"])), WAIT,
                 "the card update")
    assert _count(db, CreditNote) == 1
    assert _count(db, AuditEvent, AuditEvent.action == "approval.approved") == 1
    assert _count(db, AuditEvent, AuditEvent.action == "invoice.credit_note") == 1
    assert _count(db, OutboxMessage, OutboxMessage.payload["template"].as_string()
                  == "credit_note") == 1
    with db.read_session() as s:
        assert s.exec(select(Invoice.balance_minor).where(
            Invoice.number == "INV-2026-000101")).one() == 90_000
        decided = s.exec(select(CreditNoteRequest)).one()
    assert decided.status == "issued" and decided.decided_by in clickers
    losers = [e for e in api.ephemerals() if "already approved" in text_of(e)]
    assert len(losers) >= len(bodies) - 1


def a_dispute_accepted_through_two_processes_is_resolved_once(
        db, api, drivers: list[SlackDriver]) -> None:
    # given a dispute on INV-2026-000102, its card with the owner
    with db.transaction() as s:
        f.dispute(s, "INV-2026-000102", amount="400.00", actor="api")
    card = api.wait_for(lambda: next((m for m in api.dm_messages("USALES01")
                                      if m["text"].startswith("Dispute #1")), None),
                        WAIT, "the owner's card")
    # the owner and a collector each open the Accept modal
    bodies = []
    for i, user in enumerate(("USALES01", "UCOLL001")):
        drivers[i].click(user, card, "backoffice_dispute_accept")
        view = api.wait_for(lambda user=user: (api.views_for(user) or [None])[-1], WAIT,
                            f"{user}'s modal")
        bodies.append(prepared_submission(drivers[i], user, view, {
            "resolve_credit": {"resolve_credit_input": "300.00" if i else "400.00"}}))
    # when both submit at once through both processes, each submission twice
    order = [0, 1, 1, 0]
    answers = _concurrently(drivers, [bodies[i] for i in order])
    assert [status for status, _ in answers] == [200] * 4
    # then each submission a check let through (an empty 200 closes the modal; one checked
    # after the other's decision is refused in the form) ran once after its ack, and its
    # submitter was told: one won, the other heard who did; the replays claimed nothing
    for i, user in enumerate(("USALES01", "UCOLL001")):
        mine = [text for (_, text), j in zip(answers, order, strict=True) if j == i]
        if "" in mine:
            api.wait_for(lambda user=user: [e for e in api.ephemerals(user)
                                            if "Dispute #1" in text_of(e)], WAIT,
                         f"{user} told")
        else:
            assert all("already accepted" in text for text in mine), mine
    told = [text_of(e) for e in api.ephemerals() if "Dispute #1" in text_of(e)]
    assert len([t for t in told if "accepted: a credit note" in t]) == 1, told
    cards = api.wait_for(lambda: [m for m in api.messages("CAPPROVAL")
                                  if m["text"].startswith("Credit note approval")
                                  and "INV-2026-000102" in text_of(m)], WAIT, "the card")
    with db.read_session() as s:
        dispute = s.exec(select(Dispute)).one()
        requests = s.exec(select(CreditNoteRequest).where(
            CreditNoteRequest.dispute_id == dispute.id)).all()
    assert dispute.status == "accepted" and dispute.resolved_by in ("USALES01", "UCOLL001")
    assert len(requests) == 1
    assert requests[0].amount_minor == dispute.credit_amount_minor
    assert _count(db, AuditEvent, AuditEvent.action == "dispute.accepted") == 1
    assert len(cards) == 1

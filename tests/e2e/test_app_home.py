"""App Home for everyone (issue 13, point 7), through signed requests to the real server and
the Slack stand-in: reps see their orders and their customers' overdue, approvers their queue
with the card's buttons (which decide), collectors their worklist and promises due, admins
their KPIs with a trend."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import select

from models import Approval, Customer
from sandbox.driver import FORM
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import prepared_click, text_of
from tests.support.timetravel import frozen_at
from workflows import collections

TODAY = date(2026, 11, 24)
NOON = datetime.combine(TODAY, time(12), UTC)
frozen_time = frozen_at(NOON, tick=True)
WAIT = 10.0


def home_of(slack, api, user_id: str, *, after: dict | None = None) -> str:
    slack.app_home_opened(user_id)
    return text_of(api.wait_for(lambda: (lambda v: v if v and v != after else None)(
        api.home_view(user_id)), WAIT, f"the home of {user_id}"))


def test_each_role_sees_its_own_work_on_app_home(server, slack, standin) -> None:
    api = standin.api
    # given a rep with an approved order, an order waiting for credit, and an overdue customer
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-GLOBEX", "Globex Corporation", sales_rep="USALES01",
                   collector="UCOLL001")
        f.customer(s, "C-NEW", "Newco", reviewed=False, sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00")
        approved = f.order(s, "C-GLOBEX", lines=[("WID-1", 3)]).number
        waiting = f.order(s, "C-NEW", lines=[("WID-1", 2)]).number
        f.invoice(s, "INV-LATE", "C-GLOBEX", total="4321.00", due=TODAY - timedelta(days=12))
    # and a promise to pay due today
    with server.db.transaction() as s:
        globex = s.exec(select(Customer).where(Customer.external_id == "C-GLOBEX")).one()
        collections.create_promise(s, customer_id=globex.id, actor="UCOLL001",
                                   amount="1000.00", promised_date=TODAY, note=None,
                                   as_of=TODAY, now=NOON)
    # then the rep's home shows both orders and the customer's overdue
    rep = home_of(slack, api, "USALES01")
    assert "Waiting for approval" in rep and waiting in rep
    assert "Open orders" in rep and approved in rep
    assert "Your customers' overdue" in rep and "USD 4,321.00 overdue" in rep
    assert "Your roles: sales rep" in rep
    # and the collector's home shows the promise due today and the worklist
    collector = home_of(slack, api, "UCOLL001")
    assert "Promises to pay due" in collector and "USD 1,000.00 by" in collector
    assert "Your collections worklist" in collector and "Globex Corporation" in collector
    # and the admin's home shows the KPIs with the open-AR trend as a sparkline
    admin = home_of(slack, api, ADMIN)
    assert "DSO" in admin and "Open AR, last 8 weeks" in admin
    assert any(spark in admin for spark in "▁▂▃▄▅▆▇█")
    # and the approver's home lists the request with the card's buttons
    approver_home = home_of(slack, api, "UCREDIT1")
    assert waiting in approver_home and "approval_approve" in approver_home
    assert "approval_reject" in approver_home
    # when the approver clicks Approve on the home tab
    shown = api.home_view("UCREDIT1")
    stale = prepared_click(slack, "USALES01", shown, "approval_approve")
    slack.click("UCREDIT1", shown, "approval_approve")
    # then the order is approved and the queue on the home tab is empty again
    api.wait_for(lambda: "Nothing waits for your decision" in text_of(
        api.home_view("UCREDIT1")) or None, WAIT, "the refreshed home")
    with server.db.read_session() as s:
        assert s.exec(select(Approval.status)).all() == ["approved"]
    # and a rep clicking the same button from an old copy is refused in their DM
    slack.send(stale, FORM)
    refused = api.wait_for(lambda: [m for m in api.dm_messages("USALES01")
                                    if "Only a credit approver" in text_of(m)] or None, WAIT,
                           "the refusal")
    assert ":no_entry_sign:" in text_of(refused[0])


def test_a_home_with_many_items_says_how_many_more_there_are(server, slack, standin) -> None:
    api = standin.api
    # given: a rep's twelve customers, all overdue, each with a promise to pay due today
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCOLL001", "collector")
        for n in range(12):
            f.customer(s, f"C-{n:02d}", f"Customer {n:02d}", sales_rep="USALES01",
                       collector="UCOLL001")
            f.invoice(s, f"INV-2026-{n + 1:06d}", f"C-{n:02d}", total=f"{100 + n}.00",
                      due=TODAY - timedelta(days=5))
    with server.db.transaction() as s:
        for customer in s.exec(select(Customer)).all():
            collections.create_promise(s, customer_id=customer.id, actor="UCOLL001",
                                       amount="50.00", promised_date=TODAY, note=None,
                                       as_of=TODAY, now=NOON)
    # when: the rep and the collector open App Home
    rep = home_of(slack, api, "USALES01")
    collector = home_of(slack, api, "UCOLL001")
    # then: the rep sees the 8 most overdue customers and how many more there are
    overdue = rep.split("Your customers' overdue")[1]
    assert overdue.count(" overdue, oldest ") == 8 and "Customer 11" in overdue
    assert "…and 4 more" in overdue
    # and: the collector sees 10 promises due and how many more there are
    promises = collector.split("Promises to pay due")[1].split("Your collections worklist")[0]
    assert promises.count("USD 50.00 by") == 10
    assert "…and 2 more" in promises


def test_rejecting_from_app_home_through_the_modal_refreshes_the_queue(
        server, slack, standin) -> None:
    from models import Order

    api = standin.api
    # given: an order waiting for credit approval, on a credit approver's App Home
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s, "C-NEW", "Newco", reviewed=False, sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00")
        waiting = f.order(s, "C-NEW", lines=[("WID-1", 2)]).number
    assert waiting in home_of(slack, api, "UCREDIT1")
    # when: she clicks Reject there and submits the modal with a reason
    home = api.home_view("UCREDIT1")
    assert slack.click("UCREDIT1", home, "approval_reject").status_code == 200
    modal = api.wait_for(lambda: (api.views_for("UCREDIT1") or [None])[-1], WAIT, "the modal")
    assert slack.submit_view("UCREDIT1", modal, {
        "reject_reason": {"reject_reason_input": "too risky"}}).status_code == 200
    # then: the order is rejected, and her App Home no longer offers it
    api.wait_for(lambda: "Nothing waits for your decision" in text_of(
        api.home_view("UCREDIT1")) or None, WAIT, "the refreshed home")
    with server.db.read_session() as s:
        assert s.exec(select(Order.status).where(Order.number == waiting)).one() == "rejected"

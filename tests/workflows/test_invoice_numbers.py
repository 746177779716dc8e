"""Invoice numbers past 999,999 in a year (SPEC §3 says `INV-<year>-<6 digits>`): the counter
goes on with 7 digits rather than refusing to invoice. Nothing in the bot orders invoices by
the text of their number (listings go by due date, issue date or id), lookups are exact, and
remittance parsing tells a 7-digit number from the 6-digit one sharing its lossy key."""

from __future__ import annotations

from datetime import date

from models import Counter
from workflows import numbering, remittance

DAY = date(2026, 12, 7)


def test_the_millionth_invoice_of_a_year_gets_seven_digits_and_stays_distinct(session) -> None:
    # given a year whose counter is at 999,998
    session.add(Counter(name="invoice:2026", value=999_998))
    session.flush()
    # when two more invoices are numbered
    numbers = [numbering.next_invoice_number(session, DAY) for _ in range(2)]
    # then the second has seven digits (no clash, no wrap-around to 000000)
    assert numbers == ["INV-2026-999999", "INV-2026-1000000"]
    # and a remittance naming it finds it, not INV-2026-000001 (same key "2261"), and back
    known = ["INV-2026-000001", "INV-2026-1000000", "INV-2026-999999"]
    for text, meant in (("paid INV-2026-1000000", "INV-2026-1000000"),
                        ("inv 2026/1000000 thanks", "INV-2026-1000000"),
                        ("INV-2026-000001", "INV-2026-000001"),
                        ("re inv 2026-999999", "INV-2026-999999")):
        assert list(remittance.find_references(text, known)) == [meant], text


def test_a_statement_lists_same_day_invoices_in_number_order_past_999999(session) -> None:
    from datetime import timedelta

    from tests.support import factories as f
    from workflows import statements

    # given three invoices issued the same day, numbered across the millionth
    customer = f.customer(session, "C-A", "Acme")
    for number in ("INV-2026-1000000", "INV-2026-999999", "INV-2026-1000001"):
        f.invoice(session, number, "C-A", total="10.00", issued=DAY,
                  due=DAY + timedelta(days=30))
    # when its statement is made
    found = statements.statement(session, customer, start=DAY.replace(day=1), end=DAY)
    # then they are in the order they were numbered, not as text ("1..." before "9...")
    assert [line.reference for line in found.lines] == [
        "INV-2026-999999", "INV-2026-1000000", "INV-2026-1000001"]
    assert [line.balance_minor for line in found.lines] == [1000, 2000, 3000]

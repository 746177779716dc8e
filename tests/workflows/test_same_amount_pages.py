"""Invoices of anyone with exactly a payment's amount (suggestions for an unknown payer) are
read a page at a time (`cash_candidates.AMOUNT_READ` per amount, by id): whatever the page
size, the book finds the same first invoices that fit — issued by the day the money came,
with that balance *now*, after what the run itself settled."""

from __future__ import annotations

from datetime import date

from tests.support import factories as f
from workflows import cash_candidates
from workflows.cash_candidates import SAME_AMOUNT_SHOWN, OpenBook, load_directory
from workflows.matching import PaymentFacts, Rules

RECEIVED = date(2026, 11, 20)


def _book_answers(session, monkeypatch, page: int, ids: dict[str, int]) -> list[list[str]]:
    monkeypatch.setattr(cash_candidates, "AMOUNT_READ", page)
    book = OpenBook(session, load_directory(session))

    def same_amount(amount: int, on: date = RECEIVED) -> list[str]:
        facts = PaymentFacts(amount_minor=amount, currency="USD", received_on=on,
                             payer_name="NOBODY WE KNOW", reference="THANK YOU")
        found = book.gather(facts, Rules()).same_amount
        assert len(found) <= SAME_AMOUNT_SHOWN
        return [item.number for item in found]

    answers = [same_amount(500_00), same_amount(500_00, date(2026, 9, 15)),
               same_amount(499_00), same_amount(1000_00)]
    # the run settles two of the first ones, and brings one of 1000.00 down to 500.00
    for number in ("INV-S-01", "INV-S-03"):
        book.settle(ids[number], 0)
    book.settle(ids["INV-S-02X"], 500_00)
    answers += [same_amount(500_00), same_amount(1000_00)]
    for number in ("INV-S-02", "INV-S-05", "INV-S-06", "INV-S-07", "INV-S-09"):
        book.settle(ids[number], 0)
    answers.append(same_amount(500_00))  # (now the one brought down to 500.00 is among them)
    return answers


def test_same_amount_found_alike_whatever_the_page(session, monkeypatch):
    # given 14 open invoices of 500.00 of three customers, some issued after the payment day,
    # one of 1000.00 and one of 499.00
    ids: dict[str, int] = {}
    for c in range(3):
        f.customer(session, f"C-S{c}", f"Samesum Holdings {c}", billing_email=None)
    for n in range(1, 15):
        issued = date(2026, 10, 1) if n % 4 else date(2026, 11, 25)  # every 4th: too late
        inv = f.invoice(session, f"INV-S-{n:02d}", f"C-S{n % 3}", total="500.00",
                        issued=issued, due=date(2026, 12, 31))
        ids[inv.number] = inv.id
    for number, total in (("INV-S-02X", "1000.00"), ("INV-S-99", "499.00")):
        ids[number] = f.invoice(session, number, "C-S0", total=total, issued=date(2026, 10, 1),
                                due=date(2026, 12, 31)).id
    session.flush()
    # when the book is asked with pages of one, two, five and the default size
    answers = {page: _book_answers(session, monkeypatch, page, ids)
               for page in (1, 2, 5, cash_candidates.AMOUNT_READ)}
    # then every page size gives the same first six that fit
    assert answers[1] == answers[2] == answers[5] == answers[cash_candidates.AMOUNT_READ]
    first, earlier, other, thousand, after_settling, thousand_after, last = answers[1]
    assert first == ["INV-S-01", "INV-S-02", "INV-S-03", "INV-S-05", "INV-S-06", "INV-S-07"]
    assert earlier == []  # (none issued by 15 September)
    assert other == ["INV-S-99"] and thousand == ["INV-S-02X"]
    assert after_settling == ["INV-S-02", "INV-S-05", "INV-S-06", "INV-S-07", "INV-S-09",
                              "INV-S-10"]
    assert thousand_after == []
    assert last == ["INV-S-10", "INV-S-11", "INV-S-13", "INV-S-14", "INV-S-02X"]

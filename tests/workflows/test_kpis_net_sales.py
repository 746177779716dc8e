"""Credit sales net of the credit notes dated in the period (`workflows/kpis.py`): DSO, best
possible DSO, count-back DSO and the bad-debt ratio divide by what was sold less what was
credited, as a finance team computes them — from the rollups (`kpi_daily.credited_minor`)
and from the base rows alike."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlmodel import Session

from tests.support import factories as f
from tests.support.timetravel import frozen_at
from workflows import invariants, kpis
from workflows.invoicing import issue_credit_note

NOW = datetime(2026, 7, 2, 12, 0, tzinfo=UTC)
frozen_time = frozen_at(NOW)
AS_OF = date(2026, 6, 30)  # window 04-02..06-30


@pytest.fixture
def credited(session: Session) -> Session:
    """| invoice | issued | due   | total    | credited                     | open 06-30 |
    | I0      | 03-01  | 03-31 |   500.00 |                              |   500.00   |
    | I1      | 06-01  | 07-01 | 1,000.00 | 200.00 credit note 06-10     |   800.00   |
    | F       | 06-15  | 07-15 |    50.00 | late fee on I0, waived 06-20 |     0.00   |

    Credit sales in the window: 1,000.00 − 200.00 = **800.00** (the fee is no sale, nor is
    its waiver a credit against sales). AR 1,300.00, current 800.00:
    DSO 1,300 / 800 × 90 = **146.25**, best possible 800 / 800 × 90 = **90.00**, ADD
    **56.25**; count back: June 800 (30 d), May and April nothing (61 d), then March's 500
    covers the 500 left (31 d) = **122.00**."""
    f.customer(session)
    i0 = f.invoice(session, "INV-2026-000001", total="500.00", issued=date(2026, 3, 1),
                   due=date(2026, 3, 31))
    f.invoice(session, "INV-2026-000002", total="1000.00", issued=date(2026, 6, 1),
              due=date(2026, 7, 1))
    fee = f.invoice(session, "INV-2026-000003", total="50.00", issued=date(2026, 6, 15),
                    due=date(2026, 7, 15))
    fee.fee_for_invoice_id = i0.id  # (as `workflows.late_fees` charges one)
    session.add(fee)
    session.flush()
    issue_credit_note(session, invoice_number="INV-2026-000002", amount="200.00",
                      reason="damaged", actor="test", now=NOW, issue_date=date(2026, 6, 10))
    issue_credit_note(session, invoice_number="INV-2026-000003", amount="50.00",
                      reason="fee waived", actor="test", now=NOW, issue_date=date(2026, 6, 20))
    session.commit()
    return session


@pytest.mark.parametrize("how", ["rollups", "base rows", "known_at"])
def test_credit_sales_are_net_of_the_credit_notes_of_the_window(credited: Session,
                                                                 how: str) -> None:
    # when
    report = kpis.compute(credited, AS_OF, rollups=how == "rollups",
                          known_at=NOW if how == "known_at" else None)
    # then
    assert (report.ar_minor, report.current_ar_minor) == (130000, 80000)
    assert report.credit_sales_minor == 80000
    assert report.dso == Decimal("146.25")
    assert report.best_possible_dso == Decimal("90.00")
    assert report.average_days_delinquent == Decimal("56.25")
    assert report.count_back_dso == Decimal("122.00")
    assert kpis.sales_between(credited, "USD", date(2026, 4, 2), AS_OF) == 80000
    assert invariants.validate_kpi_rollups(credited) == []


@pytest.mark.parametrize("rollups", [True, False])
def test_a_credit_note_dated_after_the_window_leaves_its_sales_as_they_were(
        credited: Session, rollups: bool) -> None:
    # when: as of 06-05, before the credit note of 06-10
    report = kpis.compute(credited, date(2026, 6, 5), rollups=rollups)
    # then: June's 1,000.00 sold, nothing credited yet
    assert report.credit_sales_minor == 100000
    # and a credit note before the window (as of 09-30: window 07-03..09-30) is not taken
    # off that window's sales (none)
    assert kpis.compute(credited, date(2026, 9, 30), rollups=rollups).credit_sales_minor == 0


@pytest.mark.parametrize("rollups", [True, False])
def test_more_credited_than_sold_in_the_window_leaves_dso_undefined(
        credited: Session, rollups: bool) -> None:
    # given: March's invoice credited in full on 06-25 (net sales 800.00 − 500.00 = 300.00),
    # then June's remaining 800.00 too (net sales −500.00)
    issue_credit_note(credited, invoice_number="INV-2026-000001", amount="500.00",
                      reason="returned", actor="test", now=NOW, issue_date=date(2026, 6, 25))
    assert kpis.compute(credited, AS_OF, rollups=rollups).credit_sales_minor == 30000
    issue_credit_note(credited, invoice_number="INV-2026-000002", amount="800.00",
                      reason="returned", actor="test", now=NOW, issue_date=date(2026, 6, 26))
    credited.commit()
    # when
    report = kpis.compute(credited, AS_OF, rollups=rollups)
    # then: nothing to divide by — shown as "—", never a negative number of days
    assert report.credit_sales_minor == -50000
    assert report.dso is None and report.best_possible_dso is None
    assert report.bad_debt_ratio is None

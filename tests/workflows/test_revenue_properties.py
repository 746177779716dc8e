"""Revenue invariants (issue 15) under random sequences of orders (goods, services and
subscriptions, mixed bundles), partial and back-dated shipments, subscription billing and
cancellations, whole orders cancelled, credit notes and monthly closes (Hypothesis), checked
after every operation at every month end and every few days of the open months:

* for each line: recognised + deferred - unbilled = invoiced - credited, where invoiced is
  summed from the invoice lines and credited from the credit notes, independently of the
  revenue code (open dates; a closed month is compared with what it recorded);
* a schedule never exceeds its allocated price, and never recognises before the obligation
  starts (its service period, or its first shipment);
* each order's allocations sum exactly to its net amount;
* a closed month never changes; the AR invariants hold.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from models import CreditNote, Invoice, InvoiceLine, Order, OrderLine, money
from tests.support import factories as f
from tests.support.examples import examples
from workflows import invariants, orders, periods, revenue, shipping, subscriptions
from workflows.errors import DomainError
from workflows.inputs import OrderIn, OrderLineIn, ShipmentLineIn
from workflows.invoicing import issue_credit_note
from workflows.revenue_schedule import add_months, month_end, next_month

START = datetime(2026, 1, 5, 10, tzinfo=UTC)
HORIZON = date(2027, 6, 30)
# sku, price, ssp, revenue type
PRODUCTS = [("G1", "30.00", "35.00", "goods"), ("G2", "7.77", None, "goods"),
            ("S1", "1000.00", "900.00", "service"), ("S2", "0.07", None, "service"),
            ("P1", "120.00", None, "subscription")]

line_spec = st.tuples(st.integers(0, len(PRODUCTS) - 1), st.integers(1, 7),
                      st.integers(-20, 60),  # service start: days from the order
                      st.integers(1, 400),  # service length in days
                      st.sampled_from([None, None, "monthly", "quarterly"]),
                      st.integers(1, 6),  # billed periods
                      st.sampled_from([None, None, "5", "12.5"]))  # discount
order_op = st.tuples(st.just("order"), st.lists(line_spec, min_size=1, max_size=3))
ship_op = st.tuples(st.just("ship"), st.integers(0, 20), st.integers(0, 20),
                    st.integers(1, 7), st.integers(0, 45))
credit_op = st.tuples(st.just("credit"), st.integers(0, 20), st.integers(1, 150_000),
                      st.integers(0, 45))
close_op = st.tuples(st.just("close"))
bill_op = st.tuples(st.just("bill"))
# which line; from the next period (None), or back-dated from the first period not invoiced
# yet, forgoing what was served (a credit approver's decision)
cancel_op = st.tuples(st.just("cancel"), st.integers(0, 20), st.sampled_from([None, "past"]))
withdraw_op = st.tuples(st.just("withdraw"), st.integers(0, 20))  # cancel a whole order
advance_op = st.tuples(st.just("advance"), st.integers(1, 70))
# an order first, so that most runs have something to ship, bill, credit and close
operations = st.tuples(order_op, st.lists(st.one_of(
    order_op, ship_op, ship_op, credit_op, close_op, bill_op, cancel_op, withdraw_op,
    advance_op, advance_op), min_size=3, max_size=13)).map(lambda first_rest: [first_rest[0],
                                                                   *first_rest[1]])


def month_ends(first: date, last: date) -> list[date]:
    out, month = [], first.replace(day=1)
    while month <= last:
        out.append(month_end(month))
        month = next_month(month)
    return out


Dated = list[tuple[date, int, int]]  # (day, order line id, minor units)


def independent_invoiced(session: Session) -> Dated:
    """Net invoiced per order line and issue date, read from the invoice lines (once per
    check; `up_to` sums them at each day)."""
    rows = session.exec(select(Invoice.issue_date, InvoiceLine.order_line_id,
                               InvoiceLine.line_total_minor)
                        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                        .where(InvoiceLine.order_line_id.is_not(None))).all()
    return [(day, line, int(amount)) for day, line, amount in rows]


def independent_credited(session: Session) -> Dated:
    """Credited per order line and effective date: each note's split over its invoice's lines
    (checked to add up to the note's net part, never more than the note)."""
    out: Dated = []
    for note in session.exec(select(CreditNote)):
        invoice = session.get(Invoice, note.invoice_id)
        lines = session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)).all()
        shares = revenue.credit_by_invoice_line(session, note)
        assert sum(shares.values()) <= note.total_minor
        assert all(share >= 0 for share in shares.values())
        if invoice.total_minor == sum(li.line_total_minor for li in lines):  # no tax here
            assert sum(shares.values()) == note.total_minor
        out += [(note.effective_date, line.order_line_id, shares.get(line.id, 0))
                for line in lines if line.order_line_id is not None]
    return out


def up_to(entries: Dated, day: date) -> dict[int, int]:
    """Per order line, the sum of the entries dated up to `day`."""
    out: dict[int, int] = {}
    for when, line, amount in entries:
        if when <= day:
            out[line] = out.get(line, 0) + amount
    return out


class Book:
    """The state of one run: the clock, and the closed months' figures as first reported."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.now = START
        self.closed_report: dict[str, dict] = {}

    @property
    def today(self) -> date:
        return self.now.date()

    def orders(self) -> list[Order]:
        return list(self.s.exec(select(Order).order_by(Order.id)))

    def apply(self, op: tuple) -> None:
        kind = op[0]
        if kind == "advance":
            self.now += timedelta(days=op[1])
        elif kind == "order":
            lines = []
            for index, qty, offset, length, billing, count, discount in op[1]:
                sku, _, _, rtype = PRODUCTS[index]
                line = OrderLineIn(sku=sku, quantity=qty, discount_pct=discount)
                if rtype != "goods":
                    line.service_start = self.today + timedelta(days=offset)
                    line.service_end = line.service_start + timedelta(days=length - 1)
                    if rtype == "subscription" and billing:
                        step = {"monthly": 1, "quarterly": 3}[billing]
                        line.billing = billing
                        line.service_end = add_months(line.service_start, count * step) \
                            - timedelta(days=1)
                lines.append(line)
            orders.create_order(self.s, OrderIn(
                customer="C-GLOBEX", sales_rep="USALES01", currency="USD", lines=lines),
                actor="USALES01", now=self.now)
        elif kind == "ship":
            _, which, line_pick, qty, back = op
            placed = self.orders()
            if not placed:
                return
            order = placed[which % len(placed)]
            open_lines = [li for li in orders.order_lines(self.s, order.id) if li.qty_open]
            if not open_lines:
                return
            line = open_lines[line_pick % len(open_lines)]
            shipped = max(self.now - timedelta(days=back),
                          datetime.combine(order.order_date, time(9), tzinfo=UTC))
            shipping.ship_order(self.s, order_number=order.number, carrier="UPS",
                                tracking_number="1Z", shipped_at=shipped, now=self.now,
                                actor="USALES01",
                                lines=[ShipmentLineIn(sku=line.sku,
                                                           quantity=min(qty, line.qty_open))])
        elif kind == "credit":
            _, which, amount, back = op
            invoices = [i for i in self.s.exec(select(Invoice).order_by(Invoice.id))
                        if i.balance_minor > 0]
            if not invoices:
                return
            invoice = invoices[which % len(invoices)]
            issued = max(invoice.issue_date, self.today - timedelta(days=back))
            issue_credit_note(self.s, invoice_number=invoice.number,
                              amount=money.to_str(min(amount, invoice.balance_minor), "USD"),
                              reason="test", actor="UCREDIT1", now=self.now, issue_date=issued)
        elif kind == "close":
            period = periods.period_of(self.today.replace(day=1) - timedelta(days=1))
            before = {ob.line_id: ob.figures(month_end(periods.parse_period(period)))
                      for ob in revenue.load_obligations(self.s)}
            result = revenue.close_month(self.s, period=period, actor="test", now=self.now)
            if result.recorded is not None:  # recorded as the schedule stood
                for ob in revenue.load_obligations(self.s):
                    assert ob.closed_figures(period) == before[ob.line_id]
        elif kind == "bill":
            for due in subscriptions.due_periods(self.s, self.today):
                subscriptions.bill_period(self.s, order_line_id=due.order_line_id,
                                          period_start=due.period_start, as_of=self.today,
                                          now=self.now)
        elif kind == "withdraw":
            placed = self.orders()
            if placed:
                orders.cancel_order(self.s, placed[op[1] % len(placed)], actor="USALES01",
                                    reason="test", now=self.now)
        elif kind == "cancel":
            billed = [li for li in self.s.exec(select(OrderLine).where(
                OrderLine.billing.is_not(None), OrderLine.cancelled_from.is_(None)))]
            if billed:
                line = billed[op[1] % len(billed)]
                order = self.s.get(Order, line.order_id)
                effective = None
                if op[2] == "past":
                    billed_from = subscriptions.billed_starts(self.s, [line.id]).get(line.id)
                    effective = next((first for first, _, _
                                      in subscriptions.live_periods(line)
                                      if not billed_from or first > max(billed_from)), None)
                subscriptions.cancel_subscription(self.s, order_number=order.number,
                                                  line_no=line.line_no, reason="test",
                                                  actor="UCREDIT1", now=self.now,
                                                  effective=effective)

    def check(self) -> None:
        s = self.s
        assert invariants.validate_all(s) == []
        obligations = revenue.load_obligations(s)
        recorded = revenue.recorded_through(s)
        # allocations sum exactly to each order's net amount
        nets: dict[int, list] = {}
        for ob in obligations:
            nets.setdefault(ob.order_id, []).append(ob)
        for group in nets.values():
            assert sum(o.allocated_minor for o in group) == sum(o.net_minor for o in group)
        # the schedule never runs ahead of the allocated price, nor before the start
        for ob in obligations:
            running = 0
            for day, amount in ob.schedule:
                running += amount
                assert running <= ob.allocated_minor, (ob, ob.schedule)
                assert ob.starts is not None and day >= ob.starts, (ob, ob.schedule)
        first_open = next_month(recorded.replace(day=1)) if recorded else date(2025, 12, 1)
        days = sorted(set(month_ends(date(2025, 12, 1), HORIZON))
                      | {first_open + timedelta(days=k) for k in range(0, 400, 9)}
                      | {self.today})
        all_invoiced, all_credited = independent_invoiced(s), independent_credited(s)
        # a day inside a closed month: what was true that day (invoiced and credited as
        # dated), within what the close recorded for the month — never its end's figures
        # before they happened, never beyond them
        inside = [d for d in (date(2025, 12, 1) + timedelta(days=k) for k in range(3, 600, 11))
                  if recorded is not None and d <= recorded and d != month_end(d)]
        for day in inside:
            invoiced, credited = up_to(all_invoiced, day), up_to(all_credited, day)
            before_end = day.replace(day=1) - timedelta(days=1)
            for ob in obligations:
                fig = revenue.figures_on(ob, day, recorded)
                assert fig.invoiced == invoiced.get(ob.line_id, 0), (day, ob)
                assert fig.credited == credited.get(ob.line_id, 0), (day, ob)
                low = ob.closed_figures(periods.period_of(before_end)).recognized
                high = ob.closed_figures(periods.period_of(day)).recognized
                assert min(low, high) <= fig.recognized <= max(low, high), (day, ob)
        for day in days:
            if recorded is not None and day <= recorded:
                continue
            invoiced, credited = up_to(all_invoiced, day), up_to(all_credited, day)
            for ob in obligations:
                fig = revenue.figures_on(ob, day, recorded)
                assert fig.invoiced == invoiced.get(ob.line_id, 0)
                assert fig.credited == credited.get(ob.line_id, 0)
                assert fig.recognized + fig.deferred - fig.unbilled == \
                    fig.invoiced - fig.credited
                assert fig.recognized <= ob.allocated_minor
                if ob.starts is None or day < ob.starts:
                    assert fig.recognized == 0
        # the report's month figures are the sums of the lines'; closed months never change
        months = [m.replace(day=1) for m in month_ends(date(2025, 12, 1), HORIZON)]
        data = revenue.to_json(revenue.report(s, first=months[0], last=months[-1],
                                              today=self.today))
        for month in data["currencies"].get("USD", {}).get("months", []):
            first = periods.parse_period(month["month"])
            lines = [revenue.figures_at_month_end(ob, first, recorded) for ob in obligations]
            assert month["deferred"] == money.to_str(sum(x.deferred for x in lines), "USD")
            assert month["unbilled"] == money.to_str(sum(x.unbilled for x in lines), "USD")
            if month["closed"]:
                assert self.closed_report.setdefault(month["month"], month) == month
                for ob, x in zip(obligations, lines, strict=True):
                    if ob.starts is None or month_end(first) < ob.starts:
                        assert x.recognized == 0


def run(session: Session, ops: list[tuple]) -> None:
    f.user(session, "USALES01", "sales")
    f.user(session, "UCREDIT1", "credit_approver")
    f.customer(session, credit_limit="100000000.00")
    for sku, price, ssp, rtype in PRODUCTS:
        f.product(session, sku, price=price, ssp=ssp, revenue_type=rtype, on_hand=10**6)
    session.commit()
    book = Book(session)
    for op in ops:
        try:
            book.apply(op)
            session.commit()
        except DomainError:  # refused (nothing to ship, month not ended, ...): undone
            session.rollback()
        book.check()


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
def test_revenue_invariants_hold_after_every_operation_at_every_date(db_factory, ops) -> None:
    with db_factory.fresh() as database, database.session() as session:
        run(session, ops)

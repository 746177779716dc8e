"""Cash application that learns from people.

When a collector applies a suggestion, says whose an unidentified payment is, or corrects an
application, the engine remembers how that customer pays (`teach`, in the same transaction as
the person's action, audited):

* a **payer alias** — the payer line is this customer's, though it looks nothing like its
  name ("GLBX HOLDINGS" pays for Globex Corporation). Learned only when the name does not
  already tell (similarity under 90) and does not belong to another customer we know (a third
  party paying once for someone else teaches nothing);
* a **remittance pattern** — the customer writes its own kind of reference, e.g. always its
  PO number ("PO 4500012345" -> label PO, starting 45, ten digits).

Next time (`workflows.cash_candidates.LearnedRules`) a fitting rule is evidence of *who* paid,
shown on the card and in the API answer ("matched because Globex paid from 'GLBX HOLDINGS' on
12 Nov 2026"); it never outweighs an exact invoice reference (`workflows.matching`). A rule
counts only while exactly one customer holds its value. Admins list and remove rules
(`/o2c rules`); removing keeps the row (inactive) and the audit trail. A correction of a
payment that a learned rule helped apply retires that rule, unless the correction keeps the
customer it named (the rule was right about who paid; only the invoices were wrong).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models import CashRule, CashRuleKind, Customer, Payment, Role
from workflows import audit, payer_names, remittance
from workflows.cash_candidates import CustomerNames, LearnedRule, LearnedRules, load_directory
from workflows.errors import NotFound, ValidationFailed
from workflows.users import require_role

ALIAS, PATTERN = CashRuleKind.PAYER_ALIAS.value, CashRuleKind.REMITTANCE_PATTERN.value
SOURCES = ("suggestion", "customer", "correction")
NAME_KNOWN = 90  # a payer name this similar to a customer's needs no alias
MAX_PATTERNS = 2  # patterns learned from one payment


def day_text(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def describe(kind: str, customer_name: str, shown: str, seen_on: date) -> str:
    """The reason shown on a card: "Globex Corporation paid from 'GLBX HOLDINGS' on 12 Nov
    2026" (plain text; blocks escape it)."""
    if kind == ALIAS:
        return f"{customer_name} paid from '{shown}' on {day_text(seen_on)}"
    return f"{customer_name} paid with a reference like '{shown}' on {day_text(seen_on)}"


_RULES, _CUSTOMERS = CashRule.__table__, Customer.__table__
_ACTIVE = (sa.select(_RULES.c.id, _RULES.c.customer_id, _RULES.c.kind, _RULES.c.value,
                     _RULES.c.shown, _RULES.c.seen_on, _CUSTOMERS.c.name)
           .join(_CUSTOMERS, _CUSTOMERS.c.id == _RULES.c.customer_id)
           .where(_RULES.c.active.is_(True)))


def snapshot(session: Session) -> LearnedRules:
    """The active rules, as the engine reads them (one query per run)."""
    return LearnedRules(
        LearnedRule(rid, cid, kind, value, describe(kind, name, shown, seen_on))
        for rid, cid, kind, value, shown, seen_on, name in session.connection().execute(
            _ACTIVE).all())


# -- learning ------------------------------------------------------------------------------------
def _active(session: Session, kind: str, value: str) -> list[CashRule]:
    return list(session.exec(select(CashRule).where(
        CashRule.kind == kind, CashRule.value == value, CashRule.active.is_(True))).all())


def _retire(session: Session, rule: CashRule, *, actor: str, now: datetime,
            reason: str) -> None:
    rule.active, rule.removed_by, rule.removed_at = False, actor, now
    rule.removed_reason = reason[:300]
    session.add(rule)
    audit.record(session, actor=actor, action="cash_rule.retired", entity_type="cash_rule",
                 entity_id=rule.id, from_state="active", to_state="inactive", reason=reason,
                 at=now, customer_id=rule.customer_id, kind=rule.kind, value=rule.value)


def _new(session: Session, *, customer: Customer, kind: str, value: str, shown: str,
         source: str, payment: Payment, actor: str, now: datetime) -> list[CashRule]:
    """The rule learned, or none when another person taught the same one at the same moment
    (the database keeps one active rule per kind, value and customer): their decision stands
    and teaches it, this one's goes on without it."""
    rule = CashRule(customer_id=customer.id, kind=kind, value=value, shown=shown[:300],
                    source=source, payment_id=payment.id,
                    seen_on=payment.value_date, taught_by=actor,
                    taught_at=now)
    try:
        with session.begin_nested():
            session.add(rule)
            session.flush()
    except IntegrityError:
        return []
    audit.record(session, actor=actor, action="cash_rule.learned", entity_type="cash_rule",
                 entity_id=rule.id, to_state="active", at=now, customer_id=customer.id,
                 customer=customer.external_id, kind=kind, value=value, shown=rule.shown,
                 source=source, payment_id=payment.id)
    return [rule]


def teach(session: Session, *, payment: Payment, customer_id: int, actor: str, source: str,
          now: datetime, invoice_numbers: Iterable[str] = (),
          names: CustomerNames | None = None) -> list[CashRule]:
    """Remember how `customer_id` paid `payment` (a person just said so). Returns the rules
    learned (none when there is nothing new to learn)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    customer = session.get(Customer, customer_id)
    if customer is None:
        return []
    learned: list[CashRule] = []
    learned += _teach_alias(session, payment=payment, customer=customer, actor=actor,
                            source=source, now=now, names=names)
    learned += _teach_patterns(session, payment=payment, customer=customer, actor=actor,
                               source=source, now=now, invoice_numbers=list(invoice_numbers))
    return learned


def _teach_alias(session: Session, *, payment: Payment, customer: Customer, actor: str,
                 source: str, now: datetime, names: CustomerNames | None) -> list[CashRule]:
    forms = payer_names.payer_forms(payment.payer_name,
                                    None if payment.payer_name else payment.reference)
    values = payer_names.alias_values(payment.payer_name, payment.reference)
    if not forms or not values:
        return []
    value = values[-1]  # the reading without the bank's words
    if payer_names.payer_similarity(forms, payer_names.name_form(customer.name)) >= NAME_KNOWN:
        return []  # the name already tells who it is
    directory = names.directory(session) if names is not None else load_directory(session)
    if any(cid != customer.id and score >= NAME_KNOWN for cid, score in directory.match(
            payment.payer_name, payment.currency, reference=payment.reference)):
        return []  # another customer we know paid for this one: nothing to learn from it
    existing = _active(session, ALIAS, value)
    if any(rule.customer_id == customer.id for rule in existing):
        return []
    for rule in existing:  # the person says this payer line is someone else's now
        _retire(session, rule, actor=actor, now=now,
                reason=f"payment #{payment.id}: {actor} applied it to {customer.name}")
    shown = payment.payer_name or forms[-1].full.upper()
    return _new(session, customer=customer, kind=ALIAS, value=value, shown=shown,
                source=source, payment=payment, actor=actor, now=now)


def _teach_patterns(session: Session, *, payment: Payment, customer: Customer, actor: str,
                    source: str, now: datetime, invoice_numbers: list[str]) -> list[CashRule]:
    learned = []
    for value, shown in remittance.pattern_values(payment.reference)[:MAX_PATTERNS]:
        if invoice_numbers and remittance.find_references(shown, invoice_numbers):
            continue  # that is the invoice number itself
        if any(rule.customer_id == customer.id for rule in _active(session, PATTERN, value)):
            continue
        learned += _new(session, customer=customer, kind=PATTERN, value=value, shown=shown,
                        source=source, payment=payment, actor=actor, now=now)
    return learned


def retire_used(session: Session, *, rule_ids: Iterable[int], payment: Payment, actor: str,
                now: datetime, customer_id: int | None = None) -> list[CashRule]:
    """A person corrected a payment that these rules helped apply: they misled once, so they
    are retired (audited); the correction teaches what is right. A rule says who paid, not
    which invoice: one naming `customer_id` — the customer the person says paid — was right,
    and stays (retired, it would only be taught again)."""
    retired = []
    for rule_id in dict.fromkeys(rule_ids):
        rule = session.get(CashRule, rule_id)
        if rule is not None and rule.active and rule.customer_id != customer_id:
            _retire(session, rule, actor=actor, now=now,
                    reason=f"payment #{payment.id} was applied because of it and corrected "
                           f"by {actor}")
            retired.append(rule)
    return retired


# -- admins: list and remove ---------------------------------------------------------------------
def list_rules(session: Session, *, actor: str, include_removed: bool = False,
               limit: int = 50) -> tuple[list[tuple[CashRule, Customer]], int]:
    """The rules, newest first (admins), and how many there are in all."""
    require_role(session, user_id=actor, roles=(Role.ADMIN,), action="cash_rules.list",
                 entity_type="cash_rule", entity_id="-")
    where = [] if include_removed else [CashRule.active.is_(True)]
    total = session.exec(select(sa.func.count()).select_from(CashRule).where(*where)).one()
    rows = session.exec(select(CashRule, Customer).join(Customer,
                                                        Customer.id == CashRule.customer_id)
                        .where(*where).order_by(CashRule.id.desc()).limit(limit)).all()
    return [(rule, customer) for rule, customer in rows], total


def remove(session: Session, *, actor: str, rule_id: int, now: datetime,
           reason: str | None = None) -> CashRule:
    """An admin removes a rule: it stops counting at once; the row and the audit trail stay."""
    require_role(session, user_id=actor, roles=(Role.ADMIN,), action="cash_rules.remove",
                 entity_type="cash_rule", entity_id=rule_id)
    # locked, then read: an admin removing it at the same moment waits and sees it removed
    rule = session.exec(select(CashRule).where(CashRule.id == rule_id).with_for_update()).first()
    if rule is None:
        raise NotFound(f"no learned rule {rule_id}")
    session.refresh(rule)
    if not rule.active:
        raise ValidationFailed.of("rule", f"rule {rule_id} was already removed by "
                                  f"{rule.removed_by}")
    rule.active, rule.removed_by, rule.removed_at = False, actor, now
    rule.removed_reason = (reason or "removed by an admin")[:300]
    session.add(rule)
    audit.record(session, actor=actor, action="cash_rule.removed", entity_type="cash_rule",
                 entity_id=rule.id, from_state="active", to_state="inactive",
                 reason=rule.removed_reason, at=now, customer_id=rule.customer_id,
                 kind=rule.kind, value=rule.value)
    session.flush()
    return rule

"""Approval tiers (SPEC §3, `O2C_APPROVAL_TIERS`): above an amount, an approval needs a second
decision by a named role after the first one.

Format: comma-separated `kind:amount:role`, e.g.
`credit:100000:admin,credit_note:5000:admin,write_off:1000:admin`. Kinds: the approval kinds
(`credit`, `discount`, `credit_note`, `write_off`, `fee_waiver`, `credit_request`); amounts
in major units of the home currency (policy `home_currency`, `O2C_HOME_CURRENCY`, default
USD); roles: the bot's roles. "Above" is strictly greater than. A credit note or a write-off
is measured with the invoice's other requests of its kind waiting or approved
(`credit_notes.approved_or_waiting`, `write_offs.approved_or_waiting`): a request split in
two under a tier is still above it.
An order's credit approval is measured by the customer's exposure with the other orders
waiting for a credit decision (`approvals.credit_tier_amount`), for the same reason.

The bot holds no exchange rates, so it cannot tell whether an amount in another currency is
under a tier: such an approval always needs the second decision when its kind has a tier
(the safe side).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from models import ApprovalKind, Role, money
from models.limits import MAX_AMOUNT_DIGITS
from workflows.validation import setting_amount_ok

KINDS = tuple(k.value for k in ApprovalKind)


@dataclass(frozen=True)
class Tier:
    kind: str
    threshold: Decimal  # major units of the home currency
    role: str


def parse_tiers(text: str) -> dict[str, Tier]:
    """`credit_note:5000:admin,...` -> {kind: Tier}; ValueError naming what is wrong."""
    tiers: dict[str, Tier] = {}
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        pieces = [p.strip() for p in item.split(":")]
        if len(pieces) != 3:
            raise ValueError(f"{item!r}: use kind:amount:role, e.g. credit_note:5000:admin")
        kind, amount, role = pieces
        if kind not in KINDS:
            raise ValueError(f"{item!r}: unknown kind {kind!r}; one of {', '.join(KINDS)}")
        try:
            threshold = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"{item!r}: {amount!r} is not an amount") from None
        if not setting_amount_ok(threshold):
            raise ValueError(f"{item!r}: the amount must be at least 0, with at most "
                             f"{MAX_AMOUNT_DIGITS} digits before the point and 3 after it")
        if role not in {r.value for r in Role}:
            raise ValueError(f"{item!r}: unknown role {role!r}")
        if kind in tiers:
            raise ValueError(f"{item!r}: {kind} has two tiers")
        tiers[kind] = Tier(kind, threshold, role)
    return tiers


def second_role(policy, kind: str, amount_minor: int | None, currency: str | None
                ) -> str | None:
    """The role whose second decision an approval of `kind` for this amount needs, or None
    (one decision is enough). `policy`: `workflows.policy.Policy`."""
    tier = parse_tiers(policy.approval_tiers).get(str(kind))
    if tier is None or amount_minor is None:
        return None
    if currency != policy.home_currency:
        return tier.role  # no exchange rates: the safe side (module docstring)
    return tier.role if money.from_minor(amount_minor, currency) > tier.threshold else None

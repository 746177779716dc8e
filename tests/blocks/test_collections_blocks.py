"""Collections builders stay inside Slack's limits however many accounts there are."""

from __future__ import annotations

import json

from blocks import templates
from blocks.collections import promise_modal, worklist_blocks
from sandbox.blockkit import validate_message, validate_view


def _account(i: int) -> dict:
    return {"customer_id": i, "name": "<!channel> " + "Very long customer name " * 20,
            "currency": "USD", "overdue_minor": 123456789, "open_minor": 123456789,
            "days_late": 400, "score": "99999.00", "risk": "5.00",
            "last_contact": "2026-11-20T10:00:00+00:00",
            "promise": {"status": "open", "amount_minor": 5000, "date": "2026-11-30"}}


def _snapshot(n: int, currencies: int = 1) -> dict:
    totals = {f"C{i:02d}": {"current": 1, "1-30": 2, "31-60": 3, "61-90": 4, "90+": 5}
              for i in range(currencies)}
    return {"collector_id": "UCOLL001", "as_of": "2026-11-23", "totals": totals,
            "accounts": [_account(i) for i in range(n)], "total_accounts": n + 990,
            "more": 990, "snoozed": 3, "tz": "Europe/Berlin"}


def test_digest_with_many_accounts_is_a_valid_message() -> None:
    # when
    rendered = templates.render("collections_digest", _snapshot(200, currencies=40))
    # then
    assert validate_message(rendered) == (None, [])
    assert len(rendered["blocks"]) <= 50
    text = json.dumps(rendered)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    shown = sum(1 for b in rendered["blocks"] if b["type"] == "actions")
    assert shown >= 10
    assert f"and {990 + 200 - shown} more accounts" in text  # beyond the top + not shown
    assert "3 snoozed" in text


def test_digest_shows_buttons_for_each_account() -> None:
    rendered = templates.render("collections_digest", _snapshot(3))
    actions = [b for b in rendered["blocks"] if b["type"] == "actions"]
    assert len(actions) == 3
    labels = [e["text"]["text"] for e in actions[0]["elements"]]
    assert labels == ["Log call", "Promise to pay", "Send reminder", "Snooze", "Dispute…"]
    assert "Ranked by how much is overdue and for how long" in json.dumps(rendered)
    assert "priority" not in json.dumps(rendered)


def test_empty_digest_says_nothing_is_overdue() -> None:
    rendered = templates.render("collections_digest", {**_snapshot(0), "totals": {},
                                                       "total_accounts": 0, "more": 0})
    assert "Nothing overdue" in json.dumps(rendered)
    assert validate_message(rendered) == (None, [])


def test_worklist_for_the_home_tab_fits() -> None:
    blocks = worklist_blocks(_snapshot(60), title="Your collections worklist")
    assert len(blocks) <= 50
    assert validate_message({"blocks": blocks, "text": "x"}) == (None, [])


def test_promise_modal_is_a_valid_view() -> None:
    from datetime import date

    view = promise_modal({"id": 1, "name": "Acme", "currency": "USD",
                          "overdue_minor": 123456}, today=date(2026, 11, 23))
    assert validate_view(view) == []
    amount = next(b for b in view["blocks"] if b.get("block_id") == "promise_amount")
    assert amount["element"]["initial_value"] == "1234.56"


def test_every_collections_notification_renders_valid_blocks() -> None:
    ctx = {"kind": "final", "level": 30, "customer_id": 1, "customer_name": "Acme",
           "days_past_due": 30,
           "invoice": {"number": "INV-1", "due_date": "2026-10-24", "currency": "USD",
                       "amount_due_minor": 100, "issue_date": "2026-09-24",
                       "days_past_due": 30, "total_minor": 100, "total": "1.00",
                       "amount_due": "USD 1.00"}}
    for name in ("overdue_notice", "dunning_escalation", "dunning_final", "dunning_no_email"):
        assert validate_message(templates.render(name, ctx)) == (None, []), name
    broken = {"promise_id": 1, "customer_id": 1, "customer": "Acme", "currency": "USD",
              "amount_minor": 100, "paid_minor": 0, "promised_date": "2026-11-22",
              "note": "said <@U1>", "taken_by": "UCOLL001"}
    assert validate_message(templates.render("promise_broken", broken)) == (None, [])
    queued = {"outbox_id": 5, "to": "ap@x.example", "subject": "Hi", "summary": "x" * 5000}
    assert validate_message(templates.render("email_queued", queued)) == (None, [])


def _people_context(kinds: int, customers: int, top: int, *, name: str = "Acme Ltd") -> dict:
    listed = [{"customer_id": i, "name": f"{name} {i} " + "x" * 70, "credit_hold": True,
               "invoices": 40, "amounts": [{"currency": c, "amount_minor": 10**15}
                                           for c in ("USD", "EUR", "GBP", "JPY", "CHF", "SEK")],
               "first": {"number": "N" * 64, "currency": "USD", "amount_due_minor": 10**15,
                         "due_date": "2026-10-24", "days_past_due": 30}}
              for i in range(top)]
    return {"as_of": "2026-11-23", "user_id": "UCOLL001", "customers": customers,
            "notices": customers * 40,
            "kinds": [{"kind": kind, "level": level, "customers": customers,
                       "invoices": customers * 40,
                       "totals": [{"currency": c, "amount_minor": 10**17}
                                  for c in ("USD", "EUR", "GBP", "JPY", "CHF", "SEK", "NOK")],
                       "top": listed}
                      for kind, level in (("reminder", 1), ("escalation", 14),
                                          ("final", 30))[:kinds]]}


def test_a_persons_dunning_message_stays_within_block_kits_limits() -> None:
    # the longest names, numbers and amounts, every kind, far more customers than shown
    message = templates.render("dunning_people", _people_context(3, 50_000, 10))
    assert validate_message(message) == (None, [])
    assert len(message["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"]
               if b["type"] == "section")
    for listing in message["blocks"][2:7:2]:  # each kind: those shown, then how many more
        shown = listing["text"]["text"].count("\u2022 ")
        assert 1 <= shown <= 10
        assert listing["text"]["text"].endswith(f"and {50_000 - shown:,} more customers_")
    # a person's list longer than a section: cut with a count, never refused by Slack
    many = templates.render("dunning_people", _people_context(1, 500, 60))
    assert validate_message(many) == (None, []) and "more customers_" in json.dumps(many)


def test_a_persons_dunning_message_is_in_their_formats() -> None:
    from blocks import i18n

    context = _people_context(1, 1, 1)
    assert "dunning_people" in templates.PERSONAL
    german = json.dumps(templates.render("dunning_people", context,
                                         fmt=i18n.formats("de-DE")), ensure_ascii=False)
    assert "24.10.2026" in german and "24 Oct 2026" not in german

"""One icon and one wording for every refusal (issue 13, point 3): whatever the bot declines
— for lack of a role, by a rule, for bad input — it says as `:no_entry_sign: [Can't <what>:]
<Why>. Nothing was changed.`; a failure of ours looks different. Through signed requests to
the real server and the Slack stand-in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time

from blocks import ids
from tests.conftest import ADMIN
from tests.e2e.test_approvals import WAIT, card, submit
from tests.e2e.test_unplaced_payment import TODAY, unplaced
from tests.support import factories as f
from tests.support.slack import ask
from tests.support.timetravel import frozen_at

frozen_time = frozen_at(datetime.combine(TODAY, time(12), UTC), tick=True)

SHAPE = re.compile(r"^:no_entry_sign: (Can't [a-z][^:]*: )?[A-Z`<&].*"
                   r"(Nothing was changed\.|nothing was changed\.|changed nothing\.)$", re.S)


def said(payload: dict) -> str:
    """The first thing a person reads in an answer: its first section, or its text."""
    for block in payload.get("blocks") or []:
        if block.get("type") == "section":
            return block["text"]["text"]
    return payload["text"]


def clicked_answer(slack, api, user: str, message: dict, action: str) -> dict:
    before = len(api.responses)
    assert slack.click(user, message, action).status_code == 200
    answers = api.wait_for(lambda: [r for r in api.responses[before:] if r["user"] == user]
                           or None, WAIT, f"the answer to {action}")
    return answers[0]["payload"]


def clicked_text(slack, api, user: str, message: dict, action: str, selected: list,
                 block_id: str) -> str:
    before = len(api.ephemerals(user)) + len(api.responses)
    assert slack.click(user, message, action, selected=selected,
                       block_id=block_id).status_code == 200
    api.wait_for(lambda: len(api.ephemerals(user)) + len(api.responses) > before or None,
                 WAIT, f"the answer to {action}")
    found = [r["payload"] for r in api.responses if r["user"] == user]
    return said(found[-1]) if found else api.ephemerals(user)[-1]["text"]


def test_refusals_of_roles_rules_and_bad_input_look_the_same(server, slack, standin,
                                                           api) -> None:
    client = api
    api = standin.api
    # given a company with an order waiting for credit approval and a payment nobody placed
    with server.db.transaction() as s:
        f.user(s, ADMIN, "admin")
        f.user(s, "USALES01", "sales")
        f.user(s, "UCREDIT1", "credit_approver")
        f.user(s, "UCOLL001", "collector")
        f.customer(s, "C-NEW", "Newco", reviewed=False, credit_limit="5000.00")
        f.customer(s, "C-GLOBEX", "Globex Corporation", sales_rep="USALES01")
        f.product(s, "WID-1", price="100.00", on_hand=100)
        approved = f.order(s, "C-GLOBEX", lines=[("WID-1", 1)]).number
    waiting = card(api, submit(server, qty=2))
    payment_id, unplaced_card = unplaced(server, client, standin, "BANK-R-1")
    # when the bot declines, for each reason it can have
    answers = {
        # a role: a sales rep asks for the payment form, and approves the card
        "role (command)": said(ask(slack, api, "USALES01", "pay")),
        "role (click)": said(clicked_answer(slack, api, "USALES01", waiting,
                                            "approval_approve")),
        # a rule: an order that is not short has no backorder choice; a policy that is not
        "rule (backorder)": said(ask(slack, api, ADMIN, f"backorder {approved} wait why not")),
        "rule (command)": said(ask(slack, api, ADMIN, "policy set no_such_policy 5")),
        # bad input: an invoice that does not exist picked in a select, a role that does not
        # exist, someone who is not a mention
        "bad input (click)": clicked_text(slack, api, "UCOLL001", unplaced_card,
                                          ids.CASHAPP_APPLY_INVOICES,
                                          [{"value": "INV-NOPE", "text": {
                                              "type": "plain_text", "text": "INV-NOPE"}}],
                                          f"{ids.CASHAPP_ACTIONS_BLOCK}:{payment_id}"),
        "bad input (role)": said(ask(slack, api, ADMIN, "role add <@UX1> pope")),
        "bad input (command)": said(ask(slack, api, "UCOLL001",
                                        f"payment {payment_id} apply INV-NOPE")),
        "bad input (user)": said(ask(slack, api, ADMIN, "role add bob admin")),
    }
    # then every one has the one icon and the one shape
    for why, text in answers.items():
        assert SHAPE.match(text), (why, text)
    assert "Only" in answers["role (command)"] and "INV-NOPE" in answers["bad input (click)"]
    # and a field of the request is said in words, not as the API's field name
    assert not [(why, text) for why, text in answers.items()
                if re.search(r"(?<!:)\b[a-z]+_[a-z_]+: ", text)]
    assert answers["bad input (role)"].startswith(":no_entry_sign: Can't change a role: ")
    assert "Apply to: no invoice INV-NOPE" in answers["bad input (command)"]
    # and no refusal uses the old warning sign
    assert not [r for r in api.responses if ":warning:" in str(r["payload"].get("text"))]


def test_a_record_id_that_is_no_row_id_is_told_the_usage(server, slack, standin) -> None:
    # when a payment or a learned rule is named by something that is no row id: digits of
    # another script ("²" is a digit to Python, not a number), or past the 32-bit id columns
    for command in ("payment ² apply INV-1", "payment 99999999999 apply INV-1",
                    "payment #٣", "rules remove ²", "rules remove 99999999999"):
        answer = said(ask(slack, standin.api, ADMIN, command))
        # then the usage is said, as for any other malformed command
        assert "Usage:" in answer, (command, answer)

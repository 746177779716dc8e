"""Record numbers answer themselves: SO-/INV-/CN- numbers mentioned in a channel, and links
to the app's record URLs (link_shared -> chat.unfurl), through signed events against the
real server and the Slack stand-in."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlmodel import select

from models import AuditEvent, OutboxMessage, OutboxStatus
from tests.conftest import ADMIN
from tests.support import factories as f
from tests.support.slack import ask, text_of

CHANNEL = "C0GENERAL"
EVIL = "<!channel> Evil & Co"


@pytest.fixture
def records(server):
    with server.db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s, "C-GLOBEX", EVIL)
        f.product(s, "WID-1", price="100.00")
        order = f.order(s, lines=[("WID-1", 3)])
        f.invoice(s, "INV-2026-000123", total="500.00", due=date(2026, 12, 1) + timedelta(30))
    return {"order": order.number}


def cards(server) -> list[OutboxMessage]:
    with server.db.read_session() as s:
        return list(s.exec(select(OutboxMessage).where(
            OutboxMessage.payload["template"].as_string() == "record_card")))


def delivered(server, standin, count: int) -> None:
    standin.api.wait_for(lambda: len([c for c in cards(server)
                                      if c.status == OutboxStatus.SENT]) >= count)


def test_a_number_gets_an_ephemeral_card_for_the_poster_once_per_thread(
        server, slack, standin, records) -> None:
    # when: a sales rep mentions an order and an invoice, and a number that does not exist
    text = f"where is {records['order']}? and INV-2026-000123, not SO-999999"
    assert slack.message("USALES01", CHANNEL, text).status_code == 200
    # then: one ephemeral card each, to the poster, in the message's thread, escaped
    delivered(server, standin, 2)
    shown = standin.api.ephemerals("USALES01", CHANNEL)
    assert len(shown) == 2
    everything = "\n".join(str(e["blocks"]) for e in shown)
    assert records["order"] in everything and "INV-2026-000123" in everything
    assert "SO-999999" not in everything
    assert "<!channel>" not in everything and "&lt;!channel&gt; Evil &amp; Co" in everything
    assert all(e["thread_ts"] for e in shown)
    assert standin.api.messages(CHANNEL)[-1]["user"] == "USALES01"  # nothing public
    # when: mentioned again in the same thread
    parent = standin.api.messages(CHANNEL)[-1]["ts"]
    slack.message("USALES01", CHANNEL, f"{records['order']} again", thread_ts=parent)
    again = slack.message("USALES01", CHANNEL, "INV-2026-000123", thread_ts=parent)
    assert again.status_code == 200
    # and: by someone else in that thread
    with server.db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
    other = slack.message("UCOLL001", CHANNEL, "INV-2026-000123?", thread_ts=parent)
    assert other.status_code == 200
    # then: no second card (at most once per number per thread)
    server.worker.drain()
    assert len(cards(server)) == 2


def test_thread_mode_replies_in_the_thread_for_everyone(server, slack, standin,
                                                        records) -> None:
    # given: an admin chose thread replies for this channel
    answer = ask(slack, standin.api, ADMIN, "channel answers thread")
    assert "thread" in text_of(answer)
    # when
    slack.message("USALES01", CHANNEL, f"{records['order']} shipped yet?")
    # then: a reply in the thread, once, for a second mention too
    delivered(server, standin, 1)
    parent = [m for m in standin.api.messages(CHANNEL) if m["user"] == "USALES01"][0]
    replies = standin.api.thread(CHANNEL, parent["ts"])
    assert [r["user"] for r in replies if r["ts"] != parent["ts"]] == ["U0BOT"]
    slack.message("USALES01", CHANNEL, records["order"], thread_ts=parent["ts"])
    server.worker.drain()
    assert len(cards(server)) == 1
    with server.db.read_session() as s:
        assert s.exec(select(AuditEvent).where(
            AuditEvent.action == "channel.number_answers")).one().to_state == "thread"


def test_no_card_for_people_without_a_role_and_no_channel_setting_for_non_admins(
        server, slack, standin, records) -> None:
    # when: someone with no role mentions an order
    slack.message("UNOBODY1", CHANNEL, f"what is {records['order']}?")
    # and: a sales rep tries to change the channel's setting
    refused = ask(slack, standin.api, "USALES01", "channel answers thread")
    # then
    assert "admin" in text_of(refused)
    server.worker.drain()
    assert cards(server) == []


def link_shared(slack, user: str, message: dict, *urls: str, channel: str = CHANNEL,
                **more: str) -> None:
    slack.event({"type": "link_shared", "channel": channel, "user": user,
                 "message_ts": message["ts"], **more,
                 "links": [{"domain": "o2c.example.com", "url": url} for url in urls]})


def test_record_links_are_unfurled_for_people_with_a_role_where_cards_are_for_everyone(
        server, slack, standin, records) -> None:
    # given: a channel whose record cards an admin made visible to everyone in it
    assert "thread" in text_of(ask(slack, standin.api, ADMIN, "channel answers thread"))
    # and: a message with links to the app's record URLs (and one to something else)
    url = f"https://o2c.example.com/api/v1/orders/{records['order']}"
    missing = "https://o2c.example.com/api/v1/invoices/INV-2026-999999"
    message = standin.api.add_message(CHANNEL, "USALES01", f"see {url} {missing}")
    # when: Slack sends link_shared
    link_shared(slack, "USALES01", message, url, missing, unfurl_id="U1",
                source="conversations_history")
    # then: one preview, for the record that exists
    [call] = standin.api.wait_for_calls("chat.unfurl")
    assert call.ok and list(call.params["unfurls"]) == [url]
    # when: someone without a role shares one
    link_shared(slack, "UNOBODY1", message, url)
    slack.message("USALES01", CHANNEL, "sync point")  # a later event, handled after it
    server.worker.drain()
    # then: no preview
    assert len(standin.api.calls_to("chat.unfurl")) == 1


def test_no_preview_where_record_cards_are_for_the_poster_only_or_off(
        server, slack, standin, records) -> None:
    # given: a preview is seen by everyone in the channel (guests, Slack Connect
    # organisations); by default record cards there are only for the poster
    url = "https://o2c.example.com/api/v1/invoices/INV-2026-000123"
    message = standin.api.add_message(CHANNEL, "USALES01", f"see {url}")
    # when: a sales rep shares a record link there, and one in the message composer (whose
    # channel Slack does not say)
    link_shared(slack, "USALES01", message, url)
    link_shared(slack, "USALES01", message, url, channel="COMPOSER", unfurl_id="U2",
                source="composer")
    # and: in a channel whose cards an admin turned off
    assert "off" in text_of(ask(slack, standin.api, ADMIN, "channel answers off",
                                channel_id="C0QUIET", channel_name="quiet"))
    quiet = standin.api.add_message("C0QUIET", "USALES01", f"see {url}")
    link_shared(slack, "USALES01", quiet, url, channel="C0QUIET")
    slack.message("USALES01", CHANNEL, "sync point")  # a later event, handled after them
    server.worker.drain()
    # then: no preview anywhere
    assert standin.api.calls_to("chat.unfurl") == []


def test_the_ephemeral_card_is_in_the_posters_locale(server, slack, standin, records) -> None:
    # given: a German-speaking collector (Slack locale de-DE) and an invoice in euros
    standin.api.add_user("UCOLL002", "greta.collector", locale="de-DE")
    with server.db.transaction() as s:
        f.user(s, "UCOLL002", "collector")
        f.customer(s, "C-MUELLER", "Müller GmbH", currency="EUR")
        f.invoice(s, "INV-2026-000777", "C-MUELLER", total="1234.56", currency="EUR",
                  due=date(2026, 12, 31))
    # when: she mentions it, then again in another thread
    slack.message("UCOLL002", CHANNEL, "INV-2026-000777?")
    delivered(server, standin, 1)
    slack.message("UCOLL002", CHANNEL, "und INV-2026-000777")
    # then: amounts, dates and texts in German; her locale looked up once and kept
    delivered(server, standin, 2)
    shown = str(standin.api.ephemerals("UCOLL002", CHANNEL)[0]["blocks"])
    assert "Rechnung INV-2026-000777" in shown and "1.234,56\\xa0€" in shown
    assert "31.12.2026" in shown
    asked = [c for c in standin.api.calls_to("users.info") if c.params["user"] == "UCOLL002"]
    assert len(asked) == 1


def test_messages_without_numbers_cost_no_database_write(server, slack, standin,
                                                         records) -> None:
    from models import SlackEventReceipt

    # when: chatter, then a mention
    slack.message("USALES01", CHANNEL, "lunch at noon?")
    slack.message("USALES01", CHANNEL, f"{records['order']}?")
    delivered(server, standin, 1)
    # then: only the mention's event id was recorded (retries of it change nothing)
    with server.db.read_session() as s:
        assert len(s.exec(select(SlackEventReceipt)).all()) == 1

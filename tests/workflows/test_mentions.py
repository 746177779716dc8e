"""workflows.mentions: which numbers a message mentions, and one card per number per thread."""

from __future__ import annotations

from sqlmodel import select

from models import OutboxMessage
from tests.support import factories as f
from workflows import mentions
from workflows.mentions import Mention, numbers_in


def test_numbers_in_finds_record_numbers_not_lookalikes() -> None:
    text = ("SO-1001, (INV-2026-000123) and CN-2026-000004; SO-1001 again; "
            "XSO-1 SO-12a INV- so-5 SO-7")
    assert numbers_in(text) == ["SO-1001", "INV-2026-000123", "CN-2026-000004"]
    assert numbers_in("SO-7") == ["SO-7"]
    assert numbers_in("nothing here") == []


def test_one_card_per_number_per_thread_and_none_for_unknown_numbers(db) -> None:
    # given
    with db.transaction() as s:
        f.user(s, "USALES01", "sales")
        f.customer(s)
        f.invoice(s, "INV-2026-000001", total="10.00")
    mention = Mention(channel="C1", ts="1.1", thread_ts=None, user_id="USALES01",
                      text="INV-2026-000001 and INV-2026-000404")
    # when: answered, then the same thread again (a reply, a retry)
    with db.transaction() as s:
        first = mentions.answer_mention(s, mention)
    with db.transaction() as s:
        again = mentions.answer_mention(s, Mention(channel="C1", ts="1.2", thread_ts="1.1",
                                                   user_id="USALES01",
                                                   text="INV-2026-000001"))
    # and: someone else mentions it in that thread, and the channel switches to thread replies
    with db.transaction() as s:
        f.user(s, "UCOLL001", "collector")
        f.user(s, "UADMIN01", "admin")
    with db.transaction() as s:
        by_another = mentions.answer_mention(s, Mention(
            channel="C1", ts="1.3", thread_ts="1.1", user_id="UCOLL001",
            text="INV-2026-000001?"))
    with db.transaction() as s:
        mentions.set_number_answers(s, channel="C1", mode="thread", actor="UADMIN01")
        in_thread = mentions.answer_mention(s, Mention(
            channel="C1", ts="1.4", thread_ts="1.1", user_id="UCOLL001",
            text="INV-2026-000001!"))
    # then: one card for the number in this thread, to the first poster
    assert first == ["INV-2026-000001"] and again == [] and by_another == [] == in_thread
    with db.read_session() as s:
        [row] = s.exec(select(OutboxMessage)).all()
    assert row.method == "chat.postEphemeral"
    assert row.payload["user"] == "USALES01" and row.payload["thread_ts"] == "1.1"
    assert row.dedupe_key == "number:C1:1.1:INV-2026-000001"


def test_channel_off_answers_nothing(db) -> None:
    with db.transaction() as s:
        f.user(s, "UADMIN01", "admin")
        f.customer(s)
        f.invoice(s, "INV-2026-000001", total="10.00")
        mentions.set_number_answers(s, channel="C1", mode="off", actor="UADMIN01")
    with db.transaction() as s:
        assert mentions.answer_mention(s, Mention("C1", "1.1", None, "UADMIN01",
                                                  "INV-2026-000001")) == []

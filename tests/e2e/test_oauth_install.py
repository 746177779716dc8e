"""OAuth install ("Add to Slack"): /slack/install -> Slack's authorize page (the stand-in's
`authorize`) -> /slack/oauth_redirect, with Bolt's OAuthSettings and slack_sdk's SQLAlchemy
stores on our database; token rotation; uninstall; one company's books per database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from models import AuditEvent, OutboxMessage, OutboxStatus, User, slack_bots
from sandbox.driver import SlackDriver
from tests.conftest import SIGNING_SECRET, start_server, test_settings
from tests.support import factories as f
from workflows import outbox
from workflows.users import roles_of

CLIENT_ID, CLIENT_SECRET = "1111.2222", "oauth-client-secret"
INSTALLER = "UNOBODY1"


@pytest.fixture
def oauth_server(database_url, standin) -> Iterator[object]:
    standin.api.enable_oauth(CLIENT_ID, CLIENT_SECRET)
    settings = test_settings(database_url, standin.api_url, slack_bot_token=None,
                             slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET,
                             o2c_admins=[])
    running = start_server(settings)
    running.worker.poll_interval = 0.05
    yield running
    running.stop()
    running.db.dispose()


@pytest.fixture
def browser(oauth_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=oauth_server.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def oslack(oauth_server, standin) -> Iterator[SlackDriver]:
    with SlackDriver(f"{oauth_server.base_url}/slack/events", SIGNING_SECRET,
                     api=standin.api) as driver:
        yield driver


def start_install(browser: httpx.Client) -> str:
    """Open /slack/install ("Add to Slack"); returns the state in Slack's authorize URL."""
    page = browser.get("/slack/install")
    assert page.status_code == 200
    url = re.search(r'href="(https://slack\.com/oauth/v2/authorize[^"]+)"', page.text).group(1)
    query = parse_qs(urlsplit(url.replace("&amp;", "&")).query)
    assert query["client_id"] == [CLIENT_ID]
    assert "chat:write" in query["scope"][0]
    # the state cookie is Secure (https only); a browser on https sends it back: so do we
    cookie = page.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    name, _, value = cookie.split(";")[0].partition("=")
    browser.cookies.set(name, value)
    return query["state"][0]


def install(browser: httpx.Client, standin, user: str = INSTALLER, **where) -> httpx.Response:
    state = start_install(browser)
    code = standin.api.authorize(user, **where)
    return browser.get("/slack/oauth_redirect", params={"code": code, "state": state})


def bot_rows(db) -> list[dict]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(slack_bots)).mappings()]


def queue_notice(db, key: str) -> int:
    with db.transaction() as s:
        row = OutboxMessage(transport="slack", method="chat.postMessage", dedupe_key=key,
                            payload={"channel": "CAR000001", "template": "text",
                                     "context": {"text": key}})
        s.add(row)
        s.flush()
        return row.id


def audited(db, action: str) -> list[AuditEvent]:
    with db.read_session() as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)))


def outbox_row(db, row_id: int) -> OutboxMessage:
    with db.read_session() as s:
        return s.get(OutboxMessage, row_id)


def seen_in(db, users) -> dict[str, str | None]:
    """The workspace each user was last seen in (users.team_id)."""
    with db.read_session() as s:
        return {u: getattr(s.get(User, u), "team_id", None) for u in users}


def put_off(db, row_id: int) -> OutboxMessage | None:
    """The row when a worker looked at it and put it off (pending, due later), else None."""
    row = outbox_row(db, row_id)
    due_later = row.next_attempt_at > row.created_at + timedelta(seconds=30)
    return row if row.status == OutboxStatus.PENDING and due_later else None


def test_install_stores_the_token_and_the_installer_becomes_admin(
        oauth_server, browser, oslack, standin) -> None:
    # when: the installer goes through "Add to Slack"
    done = install(browser, standin)
    # then: Bolt's success page, the token in our database, the installer is the first admin
    assert done.status_code == 200, done.text
    [bot] = bot_rows(oauth_server.db)
    assert bot["team_id"] == "T0001" and bot["client_id"] == CLIENT_ID
    assert standin.api.token_valid(bot["bot_token"])
    with oauth_server.db.read_session() as s:
        assert "admin" in roles_of(s, INSTALLER)
        installed = s.exec(select(AuditEvent).where(AuditEvent.action == "slack.installed")).one()
        assert installed.actor == INSTALLER and installed.data["team_id"] == "T0001"
    # and: a slash command is answered with the installed token (views.open needs it)
    assert oslack.slash(INSTALLER, "new").status_code == 200
    standin.api.wait_for_calls("views.open")
    assert standin.api.calls_to("views.open")[0].ok
    # and: the next request finds its token in the cache (no auth.test, no store query)
    checks = len(standin.api.calls_to("auth.test"))
    assert oslack.slash(INSTALLER, "new").status_code == 200
    standin.api.wait_for_calls("views.open", 2)
    assert len(standin.api.calls_to("auth.test")) == checks
    # and: the outbox delivers with it
    row_id = queue_notice(oauth_server.db, "hello from the outbox")
    oauth_server.deps.notify_outbox()
    standin.api.wait_for(lambda: outbox_row(oauth_server.db, row_id).status
                         == OutboxStatus.SENT)
    assert standin.api.messages("CAR000001")[-1]["text"] == "hello from the outbox"


def test_state_is_verified_and_used_once(oauth_server, browser, standin) -> None:
    # given: an install started in this browser
    state = start_install(browser)
    # when: the redirect comes without the state cookie (another browser)
    code = standin.api.authorize(INSTALLER)
    stranger = httpx.get(f"{oauth_server.base_url}/slack/oauth_redirect",
                         params={"code": code, "state": state})
    # then: refused, nothing stored
    assert stranger.status_code == 400
    # when: a forged state with the cookie
    forged = browser.get("/slack/oauth_redirect", params={"code": code, "state": "forged"})
    assert forged.status_code in (400, 401)
    # when: the right one, then the same one again (a replay)
    assert browser.get("/slack/oauth_redirect",
                       params={"code": code, "state": state}).status_code == 200
    browser.cookies.set("slack-app-oauth-state", state)
    replay = browser.get("/slack/oauth_redirect",
                         params={"code": standin.api.authorize(INSTALLER), "state": state})
    assert replay.status_code == 401
    assert len(bot_rows(oauth_server.db)) == 1


def test_another_org_cannot_install_but_another_workspace_of_the_grid_can(
        oauth_server, browser, standin) -> None:
    # given: installed into a workspace of the Grid org E1
    assert install(browser, standin, team_id="T0001", enterprise_id="E1").status_code == 200
    # when: another workspace of E1 installs it
    same_org = install(browser, standin, team_id="T0002", enterprise_id="E1")
    # then: it shares the books
    assert same_org.status_code == 200
    # when: a workspace of another org tries
    foreign = install(browser, standin, user="UCREDIT1", team_id="T0666", enterprise_id="E2")
    # then: refused, not stored, the other org's installer gets no role
    assert foreign.status_code == 403
    assert "another Slack organisation" in foreign.text
    assert sorted(b["team_id"] for b in bot_rows(oauth_server.db)) == ["T0001", "T0002"]
    with oauth_server.db.read_session() as s:
        assert roles_of(s, "UCREDIT1") == set()
    # and: the token Slack issued to the other org is given back (revoked), not left valid
    [given_back] = standin.api.calls_to("auth.revoke")
    issued = standin.api.issued_tokens()
    foreign_tokens = [t for t, i in issued.items() if i["enterprise_id"] == "E2"]
    assert [given_back.ok] == [True] and len(foreign_tokens) == 1
    assert issued[foreign_tokens[0]]["revoked"] is True
    assert not any(i["revoked"] for i in issued.values() if i["enterprise_id"] == "E1")


def test_uninstall_deletes_the_tokens_and_deliveries_wait_until_installed_again(
        oauth_server, browser, oslack, standin) -> None:
    # given: installed, with its first admin
    assert install(browser, standin).status_code == 200
    # when: the app is uninstalled in Slack
    standin.api.revoke(team_id="T0001")
    assert oslack.event({"type": "app_uninstalled"}).status_code == 200
    standin.api.wait_for(lambda: audited(oauth_server.db, "slack.uninstalled"))
    # then: the tokens are deleted, no O2C data touched (the installer stays admin)
    assert not bot_rows(oauth_server.db)
    assert audited(oauth_server.db, "slack.uninstalled")[0].data["team_id"] == "T0001"
    with oauth_server.db.read_session() as s:
        assert "admin" in roles_of(s, INSTALLER)
    # when: a notification is queued while not installed
    row_id = queue_notice(oauth_server.db, "while uninstalled")
    oauth_server.deps.notify_outbox()
    # then: put off (the server's worker looked at it), not sent, no attempt counted
    row = standin.api.wait_for(lambda: put_off(oauth_server.db, row_id))
    assert row.status == OutboxStatus.PENDING and row.attempts == 0
    assert not standin.api.calls_to("chat.postMessage")
    # when: installed again, and the wait is over
    assert install(browser, standin).status_code == 200

    def sent() -> bool:
        # a pass at the row's own due time: the server's worker may have looked at it again
        # meanwhile (put it off further before the install landed: a pass at the first due
        # time then found nothing due), or claimed it ("sending" for a moment)
        current = outbox_row(oauth_server.db, row_id)
        if current.status == OutboxStatus.PENDING:
            oauth_server.worker.run_once(now=current.next_attempt_at)
        return outbox_row(oauth_server.db, row_id).status == OutboxStatus.SENT
    # then: delivered, once
    standin.api.wait_for(sent, description="the row sent")
    assert [m["text"] for m in standin.api.messages("CAR000001")] == ["while uninstalled"]


def test_revoked_bot_token_is_deleted(oauth_server, browser, oslack, standin) -> None:
    # given
    assert install(browser, standin).status_code == 200
    # when
    oslack.event({"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0BOT"]}})
    # then
    standin.api.wait_for(lambda: audited(oauth_server.db, "slack.tokens_revoked"))
    assert not bot_rows(oauth_server.db)


def test_tokens_are_rotated_before_they_expire(oauth_server, browser, oslack,
                                               standin) -> None:
    # given: token rotation on; Slack's tokens expire in an hour (within Bolt's 2 hours)
    standin.api.enable_oauth(CLIENT_ID, CLIENT_SECRET, expires_in=3600)
    assert install(browser, standin).status_code == 200
    [first] = bot_rows(oauth_server.db)
    assert first["bot_refresh_token"] and first["bot_token"].startswith("xoxe.")
    # when: a request comes in (Bolt's authorize) after this process's cache expired
    oauth_server.deps.installations.store.forget()
    assert oslack.slash(INSTALLER, "new").status_code == 200
    # then: the token was refreshed once and the new one stored and used
    refreshes = [c for c in standin.api.calls_to("oauth.v2.access")
                 if c.params.get("grant_type") == "refresh_token"]
    assert len(refreshes) == 1
    assert "client_secret" not in refreshes[0].params
    [now] = [b for b in bot_rows(oauth_server.db) if b["bot_token"] != first["bot_token"]][-1:]
    assert standin.api.token_valid(now["bot_token"])
    standin.api.wait_for_calls("views.open")
    assert standin.api.calls_to("views.open")[0].ok


def test_single_token_mode_has_no_install_pages(server) -> None:
    assert httpx.get(f"{server.base_url}/slack/install").status_code in (404, 405)


def test_each_workspace_gets_its_deliveries_with_its_own_token(
        oauth_server, browser, standin) -> None:
    # given: the app installed separately into two workspaces of one Grid org
    assert install(browser, standin, team_id="T0001", enterprise_id="E1").status_code == 200
    assert install(browser, standin, user="UCREDIT1", team_id="T0002",
                   enterprise_id="E1").status_code == 200
    # and: a person of each workspace has opened the app there
    readers = {INSTALLER: "T0001", "UCREDIT1": "T0002"}
    for user, team in readers.items():
        with SlackDriver(f"{oauth_server.base_url}/slack/events", SIGNING_SECRET,
                         api=standin.api, team_id=team, enterprise_id="E1") as driver:
            assert driver.app_home_opened(user).status_code == 200
    standin.api.wait_for(lambda: {c.params.get("user_id"): c.token_team
                                  for c in standin.api.calls_to("views.publish")} == readers)
    standin.api.wait_for(lambda: seen_in(oauth_server.db, readers) == readers)
    # when: a DM to each, and a message to the company's AR channel, are queued
    with oauth_server.db.transaction() as s:
        dms = {user: outbox.post_to_user(s, user_id=user, template="text",
                                         context={"text": f"for {user}"}).id
               for user in readers}
        to_ar = outbox.post_to_channel(s, channel="ar", template="text",
                                       context={"text": "for AR"}).id
    oauth_server.deps.notify_outbox()
    # then: each DM went out with its reader's workspace token, AR's with the installer's
    standin.api.wait_for(lambda: all(outbox_row(oauth_server.db, i).status
                                     == OutboxStatus.SENT for i in [*dms.values(), to_ar]))
    sent = {c.params["channel"]: c.token_team for c in standin.api.calls_to("chat.postMessage")}
    assert sent == {**readers, "CAR000001": "T0001"}
    assert {u: outbox_row(oauth_server.db, i).team_id for u, i in dms.items()} == readers
    # when: someone in the second workspace mentions an invoice in a channel there
    with oauth_server.db.transaction() as s:
        f.user(s, "UCREDIT1", "credit_approver")
        f.customer(s)
        f.invoice(s, "INV-2026-000042", total="10.00")
    with SlackDriver(f"{oauth_server.base_url}/slack/events", SIGNING_SECRET,
                     api=standin.api, team_id="T0002", enterprise_id="E1") as driver:
        assert driver.message("UCREDIT1", "C0GENERAL", "INV-2026-000042?").status_code == 200
    # then: the answer in that channel goes out with the second workspace's token
    [card] = standin.api.wait_for_calls("chat.postEphemeral")
    assert card.ok and card.token_team == "T0002" and card.params["user"] == "UCREDIT1"
    # when: the second workspace uninstalls the app, and another DM is queued for each
    standin.api.revoke(team_id="T0002")
    with SlackDriver(f"{oauth_server.base_url}/slack/events", SIGNING_SECRET,
                     api=standin.api, team_id="T0002", enterprise_id="E1") as driver:
        assert driver.event({"type": "app_uninstalled"}).status_code == 200
    standin.api.wait_for(lambda: audited(oauth_server.db, "slack.uninstalled"))
    with oauth_server.db.transaction() as s:
        later = {user: outbox.post_to_user(s, user_id=user, template="text",
                                           context={"text": f"later for {user}"}).id
                 for user in readers}
    oauth_server.deps.notify_outbox()
    # then: the first workspace's goes out; the second's waits a minute, no attempt counted
    standin.api.wait_for(lambda: outbox_row(oauth_server.db, later[INSTALLER]).status
                         == OutboxStatus.SENT)
    waiting = standin.api.wait_for(lambda: put_off(oauth_server.db, later["UCREDIT1"]))
    assert waiting.attempts == 0 and waiting.sent_at is None
    assert [c.params["channel"] for c in standin.api.calls_to("chat.postMessage")
            if c.params.get("text", "").startswith("later")] == [INSTALLER]


def test_a_first_answer_and_a_jobs_channel_post_use_the_right_workspaces_token(
        oauth_server, browser, standin) -> None:
    from blocks.order_entry import order_modal
    from workflows import disputes
    from workflows.inputs import DisputeOpenIn

    # given: the app installed into two workspaces of one Grid org (the installer's, the
    # first, is the default installation); in the second, a sales rep and an admin the app
    # knows (rows, roles) but has never seen in Slack
    assert install(browser, standin, team_id="T0001", enterprise_id="E1").status_code == 200
    assert install(browser, standin, user="UCREDIT1", team_id="T0002",
                   enterprise_id="E1").status_code == 200
    standin.api.add_user("USALES02", "sam.second")
    standin.api.add_user("UADMIN02", "ada.second")
    standin.api.add_channel("C0DISPUTES", "disputes")
    with oauth_server.db.transaction() as s:
        f.user(s, "USALES02", "sales")
        f.user(s, "UADMIN02", "admin")
        f.customer(s, sales_rep="USALES02")
        f.product(s, "WID-1", price="100.00")
        f.invoice(s, "INV-2026-000043", total="10.00")
    assert seen_in(oauth_server.db, ["USALES02", "UADMIN02"]) == {"USALES02": None,
                                                                 "UADMIN02": None}
    # and: the order form open for the rep in the second workspace (opened there by the app's
    # installation: his first request the app sees will be its submission)
    token = next(b["bot_token"] for b in bot_rows(oauth_server.db) if b["team_id"] == "T0002")
    status, _, opened = standin.api.call("views.open", {
        "trigger_id": standin.api.issue_trigger("USALES02"),
        "view": order_modal(channel=None)}, token=token)
    assert status == 200 and opened["ok"], opened
    with SlackDriver(f"{oauth_server.base_url}/slack/events", SIGNING_SECRET,
                     api=standin.api, team_id="T0002", enterprise_id="E1") as there:
        # when: he submits it (its DM to him is written with the order)
        there.submit_view("USALES02", opened["view"], {
            "order_customer": {"order_customer_select": "C-GLOBEX"},
            "order_line_0_product": {"order_product_select": "WID-1"},
            "order_line_0_quantity": {"order_quantity_input": 2}})
        # and: the admin there sets the disputes channel
        assert there.slash("UADMIN02", "policy set disputes_channel C0DISPUTES",
                           channel_id="C0DISPUTES").status_code == 200
    # then: the DM of his first answer went out with the second workspace's token, and his
    # row knows the workspace
    dm = standin.api.wait_for(lambda: next(
        (c for c in standin.api.calls_to("chat.postMessage")
         if c.params["channel"] == "USALES02" and c.ok), None))
    assert dm.token_team == "T0002"
    standin.api.wait_for(lambda: seen_in(oauth_server.db, ["USALES02"]) == {
        "USALES02": "T0002"})
    # when: a dispute is opened outside any Slack request (the API, a job): its card goes to
    # the disputes channel
    standin.api.wait_for(lambda: audited(oauth_server.db, "policy.changed"))
    with oauth_server.db.transaction() as s:
        disputes.open_dispute(s, "INV-2026-000043", DisputeOpenIn(reason="damaged"),
                              actor="UADMIN02", now=oauth_server.deps.clock.now())
    oauth_server.deps.notify_outbox()
    # then: with the token of the workspace the channel was configured in
    card = standin.api.wait_for(lambda: next(
        (c for c in standin.api.calls_to("chat.postMessage")
         if c.params["channel"] == "C0DISPUTES" and c.ok), None))
    assert card.token_team == "T0002"


def test_slack_not_answering_the_token_exchange_shows_a_clear_page(
        oauth_server, browser, standin) -> None:
    from sandbox.webapi import Fault

    # given: Slack does not answer oauth.v2.access within the client's timeout
    oauth_server.deps.client.timeout = 0.5
    standin.api.inject("oauth.v2.access", Fault(delay=1.5))
    # when: the installer comes back from Slack's authorize page
    page = install(browser, standin)
    # then: a page saying what happened and how to go on, not a 500 problem document
    assert page.status_code == 502, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "o2c was not installed" in page.text and "Slack did not answer" in page.text
    assert 'href="/slack/install"' in page.text
    # and: nothing stored, nobody made admin
    assert bot_rows(oauth_server.db) == []
    assert audited(oauth_server.db, "slack.installed") == []
    with oauth_server.db.read_session() as s:
        assert roles_of(s, INSTALLER) == set()
    # when: Slack answers again and the installer starts over
    oauth_server.deps.client.timeout = 10
    # then: it installs
    assert install(browser, standin).status_code == 200
    assert len(bot_rows(oauth_server.db)) == 1


def state_rows(db) -> list[dict]:
    from models import slack_oauth_states

    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(slack_oauth_states)).mappings()]


def test_install_pages_opened_and_abandoned_leave_no_rows_behind(
        oauth_server, browser, standin) -> None:
    # given: "Add to Slack" opened three times and never finished (anyone can open the page)
    abandoned = [start_install(browser) for _ in range(3)]
    assert len(state_rows(oauth_server.db)) == 3
    # when: the states have expired (10 minutes) and someone opens the page again
    clock = oauth_server.deps.clock
    clock.travel_to(clock.now() + timedelta(minutes=11))
    state = start_install(browser)
    # then: only the live state is kept; the expired ones are gone, and refused
    assert [r["state"] for r in state_rows(oauth_server.db)] == [state]
    code = standin.api.authorize(INSTALLER)
    browser.cookies.set("slack-app-oauth-state", abandoned[0])
    assert browser.get("/slack/oauth_redirect",
                       params={"code": code, "state": abandoned[0]}).status_code == 401
    # and: the live one still installs
    browser.cookies.set("slack-app-oauth-state", state)
    assert browser.get("/slack/oauth_redirect",
                       params={"code": code, "state": state}).status_code == 200
    assert state_rows(oauth_server.db) == []


def test_an_install_from_another_org_at_the_same_moment_as_the_first_is_refused(
        oauth_server, browser, standin) -> None:
    import threading

    # given: another org's installer finishing at the moment the first installation is being
    # stored (after its token is saved, before the rest of its callback ran)
    store = oauth_server.deps.installations.store
    save, foreign = store.save, {}

    def save_then_the_other_org(installation) -> None:
        save(installation)
        if installation.enterprise_id == "E1" and not foreign:
            def other() -> None:
                with httpx.Client(base_url=oauth_server.base_url, timeout=10) as other_browser:
                    foreign["page"] = install(other_browser, standin, user="UCREDIT1",
                                              team_id="T0666", enterprise_id="E2")
            thread = threading.Thread(target=other)
            thread.start()
            thread.join(15)

    store.save = save_then_the_other_org
    # when: the first installation (org E1) completes
    assert install(browser, standin, team_id="T0001", enterprise_id="E1").status_code == 200
    # then: the other org's was refused, nothing of it stored, its installer no admin
    assert foreign["page"].status_code == 403, foreign["page"].text
    assert [b["team_id"] for b in bot_rows(oauth_server.db)] == ["T0001"]
    with oauth_server.db.read_session() as s:
        assert roles_of(s, "UCREDIT1") == set()
        assert "admin" in roles_of(s, INSTALLER)
    assert [e.data["enterprise_id"] for e in audited(oauth_server.db, "slack.installed")] \
        == ["E1"]
    # and: the refusal is audited
    [refused] = audited(oauth_server.db, "refused.slack.installed")
    assert refused.actor == "UCREDIT1" and refused.data["enterprise_id"] == "E2"


def test_the_database_unreachable_during_an_install_shows_a_page_saying_so(
        oauth_server, browser, standin, monkeypatch) -> None:
    down = sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    def unreachable(*args, **kwargs):
        raise down

    installations = oauth_server.deps.installations
    # given: the database goes away while an installer comes back from Slack
    state = start_install(browser)
    monkeypatch.setattr(installations.store, "save", unreachable)
    page = browser.get("/slack/oauth_redirect",
                       params={"code": standin.api.authorize(INSTALLER), "state": state})
    # then: a page saying so and how to go on, not a 500 problem document
    assert page.status_code == 503, page.text
    assert "o2c was not installed" in page.text and "database" in page.text
    assert 'href="/slack/install"' in page.text
    # and: the same for "Add to Slack" itself
    monkeypatch.setattr(installations.settings.state_store, "issue", unreachable)
    page = browser.get("/slack/install")
    assert page.status_code == 503 and "database" in page.text, page.text

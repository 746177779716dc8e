"""The sandbox's JSON API and safety rules, through the real server (no browser).

Every page action must reach the bot as a signed request to POST /slack/events, and the bot's
Web API calls must land in the mounted stand-in; these tests check both ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot import jobs
from bot.cli import build_parser, main
from bot.clock import Clock
from bot.server import create_app
from sandbox.web import SandboxRefused, check_bind_host, is_loopback_host
from tests.support.demo_seed import (
    ADMIN,
    COLLECTOR,
    COLLECTOR_2,
    CREDIT_APPROVER,
    DISCOUNT_APPROVER,
    GLOBEX,
    SALES,
    SALES_2,
)
from tests.support.sandbox_web import (
    CHANNELS,
    TEST_BUTTON,
    button_message,
    post_as_bot,
    sandbox_settings,
)
from tests.support.slack import text_of

DEMO_USERS = {ADMIN, SALES, SALES_2, CREDIT_APPROVER, DISCOUNT_APPROVER, COLLECTOR, COLLECTOR_2}


def _ephemerals_of(sandbox, user: str, containing: str) -> list[dict]:
    return [e for e in sandbox.ws.api.ephemerals(user) if containing in text_of(e)]


# -- off unless enabled, and never reachable from elsewhere ---------------------------------

def test_sandbox_is_not_there_when_disabled(server) -> None:
    # given the normal server (O2C_SANDBOX unset)
    with httpx.Client(base_url=server.base_url) as client:
        for path in ("/sandbox", "/sandbox/", "/sandbox/api/state", "/sandbox/static/app.js",
                     "/sandbox/slack/api/auth.test"):
            # when
            response = client.get(path)
            # then
            assert response.status_code == 404, path
        assert client.post("/sandbox/api/slash", json={}).status_code == 404


@pytest.mark.parametrize("api_url", [
    "https://slack.com/api/",  # a real Slack
    "http://10.0.0.5:3000/sandbox/slack/api/",  # not this computer
    "http://127.0.0.1:3000/api/",  # not the sandbox
])
def test_sandbox_refuses_to_start_unless_the_bot_talks_to_it(demo_database_url, api_url) -> None:
    settings = sandbox_settings(demo_database_url, 3000, slack_api_url=api_url)
    with pytest.raises(SandboxRefused, match="SLACK_API_URL"):
        create_app(settings)


def test_sandbox_refuses_to_start_on_a_database_not_made_by_o2c_demo(
        database_url, tmp_path) -> None:
    # given: the suite's own migrated database (SQLite or PostgreSQL, not marked by `o2c
    # demo`), a production-like PostgreSQL URL, an in-memory and a missing SQLite database
    for url in (database_url, "postgresql://o2c:secret@127.0.0.1:1/o2c", "sqlite://",
                f"sqlite:///{tmp_path / 'missing.db'}"):
        # when / then
        with pytest.raises(SandboxRefused, match="created by `o2c demo`"):
            create_app(sandbox_settings(url, 3000))


def test_serve_with_the_sandbox_on_real_data_exits_with_the_reason(
        monkeypatch, capsys, database_url) -> None:
    for name, value in {"O2C_SANDBOX": "true", "SLACK_BOT_TOKEN": "xoxb-1",
                        "SLACK_SIGNING_SECRET": "s", "O2C_API_TOKEN": "t",
                        "SLACK_API_URL": "http://127.0.0.1:3000/sandbox/slack/api/",
                        "DATABASE_URL": database_url}.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--host", "127.0.0.1"]) == 2
    assert "DATABASE_URL must be an SQLite database created by `o2c demo`" in (
        capsys.readouterr().err)


def test_serve_refuses_to_listen_beyond_localhost_with_the_sandbox(monkeypatch) -> None:
    # given
    for name, value in {"O2C_SANDBOX": "true", "SLACK_BOT_TOKEN": "xoxb-1",
                        "SLACK_SIGNING_SECRET": "s", "O2C_API_TOKEN": "t"}.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["serve"])  # the default --host is 0.0.0.0
    # when / then (the CLI prints this SettingsError as `o2c: ...`, exit code 2)
    with pytest.raises(SandboxRefused, match="refusing to listen on 0.0.0.0"):
        args.func(args)
    check_bind_host("127.0.0.1")  # fine
    assert [is_loopback_host(h) for h in ("localhost:3000", "127.0.0.1", "[::1]:80",
                                          "127.1.2.3", "evil.example", "10.0.0.1:3000",
                                          "0.0.0.0", None)] == [True] * 4 + [False] * 4


def test_sandbox_answers_only_loopback_clients_naming_a_loopback_host(demo_database_url) -> None:
    # given the app (no lifespan needed), reached from a remote and from a local client
    app = create_app(sandbox_settings(demo_database_url, 3000))

    async def status(client_ip: str, path: str, host: str = "127.0.0.1:3000",
                     headers: dict | None = None) -> int:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 5555))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            return (await c.get(path, headers=headers)).status_code

    # then
    assert asyncio.run(status("203.0.113.9", "/sandbox/")) == 404
    assert asyncio.run(status("203.0.113.9", "/sandbox/api/state?wait=0")) == 404
    assert asyncio.run(status("127.0.0.1", "/sandbox/")) == 200
    # a page on another domain resolving to 127.0.0.1 (DNS rebinding) is refused too
    assert asyncio.run(status("127.0.0.1", "/sandbox/", host="evil.example:3000")) == 404
    # a local reverse proxy (loopback client, Host rewritten to 127.0.0.1) is refused by the
    # headers a proxy adds and a browser never sends
    for header in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                   {"X-Real-IP": "203.0.113.9"}, {"Via": "1.1 nginx"}):
        assert asyncio.run(status("127.0.0.1", "/sandbox/", headers=header)) == 404, header
        assert asyncio.run(status("127.0.0.1", "/sandbox/api/state?wait=0",
                                  headers=header)) == 404, header
    # the rest of the app does not care
    assert asyncio.run(status("203.0.113.9", "/healthz")) == 200
    assert asyncio.run(status("127.0.0.1", "/healthz",
                              headers={"X-Forwarded-For": "203.0.113.9"})) == 200


def test_page_actions_refuse_cross_site_requests(sandbox) -> None:
    body = {"user": SALES, "channel": CHANNELS["approvals"], "text": "/o2c help"}
    form = sandbox.page_api.post("slash", data=body)
    foreign = sandbox.page_api.post("slash", json=body, headers={"Origin": "http://evil.example"})
    cross = sandbox.page_api.post("slash", json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert (form.status_code, foreign.status_code, cross.status_code) == (415, 403, 403)
    assert sandbox.ws.api.calls_to("chat.postEphemeral") == []
    assert sandbox.ws.api.responses == []


def test_page_is_served_with_a_strict_content_security_policy(sandbox) -> None:
    with httpx.Client(follow_redirects=True) as client:
        page = client.get(sandbox.url)
        script = client.get(f"{sandbox.url}/static/app.js")
    assert page.status_code == 200 and "<title>o2c-bot sandbox</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "https://" not in page.text  # nothing is loaded from the network: works offline
    assert script.status_code == 200 and "function mrkdwn" in script.text


# -- state ---------------------------------------------------------------------------------

def test_state_shows_the_demo_users_channels_and_posted_cards(sandbox) -> None:
    # when the outbox has delivered what the seed queued (an approval card at least)
    sandbox.wait_for(lambda: sandbox.ws.api.messages(CHANNELS["approvals"]), "an approval card")
    state = sandbox.state()
    # then
    users = {u["id"]: u for u in state["users"]}
    assert set(users) >= DEMO_USERS
    assert "admin" in users[ADMIN]["roles"] and "collector" in users[COLLECTOR]["roles"]
    assert users[SALES]["tz"] != "UTC"  # time zones came from the database
    channels = {c["name"]: c["id"] for c in state["channels"]}
    assert {k: channels[k] for k in CHANNELS} == CHANNELS
    card = state["messages"][CHANNELS["approvals"]][0]
    assert "approval" in card["text"].lower()
    assert any(b["type"] == "actions" for b in card["blocks"])


def test_long_poll_waits_for_a_change(sandbox) -> None:
    # given a workspace where nothing else is going on
    sandbox.wait_until_quiet()
    version = sandbox.state()["version"]
    quiet = sandbox.page_api.get("state", params={"since": version + 1000, "wait": 0.3})
    assert quiet.json()["version"] == sandbox.ws.api.version
    answers: list[dict] = []
    waiter = threading.Thread(target=lambda: answers.append(sandbox.page_api.get(
        "state", params={"since": sandbox.ws.api.version}).json()))
    waiter.start()
    # when something happens
    sandbox.ws.api.add_message(CHANNELS["ar"], SALES, "hello")
    waiter.join(10)
    # then the waiting poll returned with it
    assert answers and answers[0]["version"] > version
    assert any(m["text"] == "hello" for m in answers[0]["messages"][CHANNELS["ar"]])


# -- actions go to the bot as Slack would send them ----------------------------------------

def test_slash_command_is_answered_only_to_the_user_who_typed_it(sandbox) -> None:
    # given
    number = sandbox.an_order_of(SALES)
    # when
    response = sandbox.act("slash", user=SALES, channel=CHANNELS["approvals"],
                           text=f"/o2c order {number}")
    # then
    assert response.status_code == 200, response.text
    answer = sandbox.wait_for(lambda: _ephemerals_of(sandbox, SALES, f"Order {number}"),
                              "the order card")[0]
    assert answer["channel"] == CHANNELS["approvals"]
    state = sandbox.state()
    shown_to = {e["recipient"] for e in state["ephemerals"]}
    assert shown_to == {SALES}


def test_slash_command_in_the_bot_dm(sandbox) -> None:
    response = sandbox.act("slash", user=COLLECTOR, channel="D" + COLLECTOR, text="/o2c ar")
    assert response.status_code == 200, response.text
    answer = sandbox.wait_for(lambda: _ephemerals_of(sandbox, COLLECTOR, "Accounts receivable"),
                              "the AR overview")[0]
    assert answer["channel"] == "D" + COLLECTOR


def test_actions_are_signed_like_slack(sandbox) -> None:
    # given a driver whose signing secret is wrong
    sandbox.ws.driver.signing_secret = "not-the-secret"
    # when
    response = sandbox.act("slash", user=SALES, channel=CHANNELS["ar"], text="/o2c help")
    # then the bot refused it, and the page is told so
    assert response.status_code == 502
    assert "401" in response.json()["error"]


def test_bad_actions_get_clear_errors(sandbox) -> None:
    unknown_command = sandbox.act("slash", user=SALES, channel=CHANNELS["ar"], text="/giphy cat")
    unknown_user = sandbox.act("slash", user="U0NOBODY", channel=CHANNELS["ar"], text="/o2c")
    bot_user = sandbox.act("slash", user=sandbox.ws.api.bot_user_id, channel=CHANNELS["ar"],
                           text="/o2c")
    unknown_channel = sandbox.act("slash", user=SALES, channel="C0NOPE", text="/o2c help")
    others_dm = sandbox.act("slash", user=SALES, channel="D" + COLLECTOR, text="/o2c help")
    gone = sandbox.act("click", user=SALES, action_id="x",
                       surface={"kind": "message", "channel": CHANNELS["ar"], "ts": "1.2"})
    assert unknown_command.status_code == 400 and "/o2c help" in unknown_command.json()["error"]
    assert [r.status_code for r in (unknown_user, bot_user, unknown_channel, others_dm, gone)] \
        == [404] * 5


def test_plain_message_is_posted_to_the_channel(sandbox) -> None:
    response = sandbox.act("message", user=SALES, channel=CHANNELS["ar"], text="hi <!channel>")
    assert response.status_code == 200, response.text
    (message,) = sandbox.ws.api.messages(CHANNELS["ar"])
    assert (message["user"], message["text"]) == (SALES, "hi <!channel>")


def test_click_reaches_the_bot_and_chat_update_edits_in_place(test_listeners) -> None:
    sandbox = test_listeners
    # given a bot message with a button
    posted = post_as_bot(sandbox, CHANNELS["alerts"], "pick", button_message("Please act"))
    # when the user clicks it
    response = sandbox.act("click", user=CREDIT_APPROVER, action_id=TEST_BUTTON,
                           block_id="test-actions",
                           surface={"kind": "message", "channel": posted["channel"],
                                    "ts": posted["ts"]})
    # then the same message is updated
    assert response.status_code == 200, response.text
    edited = sandbox.wait_for(lambda: [m for m in sandbox.state()["messages"][posted["channel"]]
                                       if m["ts"] == posted["ts"] and m["edited"]], "the edit")[0]
    assert "Done" in text_of(edited) and CREDIT_APPROVER in text_of(edited)
    same = [m for m in sandbox.ws.api.messages(posted["channel"]) if m["ts"] == posted["ts"]]
    assert len(same) == 1 and same[0]["edited"]  # edited in place, not re-posted
    click = sandbox.ws.api.calls_to("chat.update")[0]
    assert click.params["ts"] == posted["ts"]


def test_click_on_a_button_nobody_handles_says_so(sandbox) -> None:
    posted = post_as_bot(sandbox, CHANNELS["alerts"], "pick", button_message("Please act"))
    response = sandbox.act("click", user=SALES, action_id=TEST_BUTTON,
                           surface={"kind": "message", "channel": posted["channel"],
                                    "ts": posted["ts"]})
    assert response.status_code == 502 and "no listener" in response.json()["error"]


def test_modal_opens_loads_options_shows_errors_and_submits(test_listeners) -> None:
    sandbox = test_listeners
    # given the bot opened a modal from a slash command
    sandbox.act("slash", user=SALES, channel="D" + SALES, text="/o2c sandbox-form")
    view = sandbox.wait_for(lambda: sandbox.state()["modals"].get(SALES), "the modal")[0]
    surface = {"kind": "view", "view_id": view["id"]}
    # when the user types into the customer select
    options = sandbox.act("suggest", user=SALES, surface=surface, action_id="pick",
                          block_id="customer", value="glo").json()
    # then the bot's options come back
    assert [o["text"]["text"] for o in options["options"]] == ["Globex Corporation"]
    globex = options["options"][0]
    values = {"customer": {"pick": globex}, "product": {"pick": "GAD-2"}, "qty": {"n": "0"},
              "ship": {"d": "2030-01-31"}, "note": {"t": "rush <b>please</b>"}}
    # when submitted with a bad quantity
    refused = sandbox.act("submit", user=SALES, view_id=view["id"], values=values)
    # then the modal stays open with the error under the input
    assert refused.status_code == 200 and refused.json()["errors"] == {
        "qty": "Quantity must be more than 0"}
    still = sandbox.state()["modals"][SALES][0]
    assert still["id"] == view["id"] and still["errors"] == {"qty": "Quantity must be more than 0"}
    # when corrected
    values["qty"] = {"n": "3"}
    accepted = sandbox.act("submit", user=SALES, view_id=view["id"], values=values)
    # then it closes and the bot got every value
    assert accepted.status_code == 200 and accepted.json()["errors"] == {}
    assert sandbox.state()["modals"].get(SALES) == []
    saved = sandbox.wait_for(lambda: [m for m in sandbox.ws.api.dm_messages(SALES)
                                      if m["text"].startswith("Saved")], "the saved DM")[0]
    assert f'"customer": "{GLOBEX}"' in saved["text"] and '"qty": 3' in saved["text"]
    assert '"ship": "2030-01-31"' in saved["text"] and "&lt;b&gt;please" in saved["text"]


def test_a_user_cannot_act_on_someone_elses_modal(test_listeners) -> None:
    sandbox = test_listeners
    sandbox.act("slash", user=SALES, channel="D" + SALES, text="/o2c sandbox-form")
    view = sandbox.wait_for(lambda: sandbox.state()["modals"].get(SALES), "the modal")[0]
    other = sandbox.act("submit", user=COLLECTOR, view_id=view["id"], values={})
    assert other.status_code == 404
    closed = sandbox.act("close", user=SALES, view_id=view["id"])
    assert closed.status_code == 200 and sandbox.state()["modals"][SALES] == []


def test_app_home_is_published_when_opened(sandbox) -> None:
    response = sandbox.act("home", user=COLLECTOR)
    assert response.status_code == 200, response.text
    home = sandbox.wait_for(lambda: sandbox.state()["homes"].get(COLLECTOR), "the home tab")
    assert "collector" in text_of(home)


# -- time travel -----------------------------------------------------------------------------

def test_time_travel_runs_a_job_as_of_a_date_for_admins_only(sandbox, ping_job) -> None:
    # given
    assert {"name": ping_job, "summary": "DM the collector (test job)"} in \
        sandbox.page_api.get("jobs").json()["jobs"]
    # when a sales rep tries
    refused = sandbox.act("time-travel", user=SALES, job=ping_job, as_of="2031-03-02")
    # then nothing runs
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    # when the admin runs it
    done = sandbox.act("time-travel", user=ADMIN, job=ping_job, as_of="2031-03-02")
    # then it ran as of that date and its DM is delivered at once
    assert done.status_code == 200, done.text
    assert done.json()["summary"] == {"collectors": 1, "as_of": "2031-03-02"}
    dm = sandbox.wait_for(lambda: sandbox.ws.api.dm_messages(COLLECTOR), "the collector's DM")
    assert "as of 2031-03-02" in dm[-1]["text"]
    assert len([m for m in sandbox.ws.api.dm_messages(COLLECTOR) if "2031" in m["text"]]) == 1


def _next(weekday: int, after_days: int = 30):
    """A day of the given weekday (0 = Monday) about a month after the demo's today."""
    day = Clock().business_today() + timedelta(days=after_days)
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def test_time_travel_moves_the_bots_clock_and_a_second_run_says_it_was_done(sandbox
                                                                            ) -> None:
    # given a Wednesday a month ahead, at 15:00 for the admin in London (10:00 in New York)
    wednesday = _next(2)
    # when the admin runs the digest schedule there
    first = sandbox.act("time-travel", user=ADMIN, job="digest-schedule",
                        as_of=wednesday.isoformat(), at="15:00")
    again = sandbox.act("time-travel", user=ADMIN, job="digest-schedule",
                        as_of=wednesday.isoformat(), at="15:30")
    # then both collectors, each in working hours of their own zone, got that day's digest
    assert first.status_code == 200, first.text
    summary = first.json()["summary"]
    assert sorted(summary["collectors"]) == sorted([COLLECTOR, COLLECTOR_2])
    in_utc = datetime.combine(wednesday, time(15), ZoneInfo("Europe/London")).astimezone(UTC)
    assert summary["at"].startswith(in_utc.isoformat()[:16])
    assert first.json()["clock"]["travelled"] is True
    # and the second run sent nothing and says why, naming who already had it
    repeat = again.json()["summary"]
    assert repeat["digests"] == 0 and sorted(repeat["already_sent"]) == sorted(
        [COLLECTOR, COLLECTOR_2])
    assert "already had that day's digest" in repeat["note"]
    # and the bot's clock stays there (the page shows it) until the admin comes back
    assert sandbox.page_api.get("jobs").json()["clock"]["now"].startswith(wednesday.isoformat())
    back = sandbox.act("time-travel/reset", user=ADMIN)
    assert back.json()["clock"]["travelled"] is False
    assert sandbox.act("time-travel/reset", user=SALES).status_code == 403


def test_time_travel_posts_the_kpis_of_a_future_week(sandbox) -> None:
    # given a Monday a month ahead, 09:00 in London (the post is due at 08:00 business time)
    monday = _next(0)
    # when the admin runs the weekly KPI post there, twice
    first = sandbox.act("time-travel", user=ADMIN, job="kpi-report", as_of=monday.isoformat())
    again = sandbox.act("time-travel", user=ADMIN, job="kpi-report", as_of=monday.isoformat())
    # then it is posted once, as of that day, and the second run says so
    assert first.json()["summary"]["posted"] is True, first.text
    assert first.json()["summary"]["as_of"] == monday.isoformat()
    assert again.json()["summary"] == {"week": first.json()["summary"]["week"],
                                       "posted": False, "reason": "already posted this week"}


def test_time_travel_reports_a_failing_job(sandbox, monkeypatch) -> None:
    def broken(deps, as_of):
        raise RuntimeError("boom")

    monkeypatch.setitem(jobs.JOBS, "broken", jobs.Job("broken", broken, None, "fails"))
    response = sandbox.act("time-travel", user=ADMIN, job="broken", as_of="2030-01-01")
    assert response.status_code == 500
    assert response.json() == {"ok": False, "error": "broken failed: RuntimeError"}


def test_time_travel_rejects_unknown_jobs_and_dates(sandbox) -> None:
    unknown = sandbox.act("time-travel", user=ADMIN, job="no-such-job",
                          as_of=Clock().business_today().isoformat())
    bad_date = sandbox.act("time-travel", user=ADMIN, job="no-such-job", as_of="31/02/2030")
    assert unknown.status_code == 404 and "no-such-job" in unknown.json()["error"]
    assert bad_date.status_code == 422


def test_bot_web_api_calls_land_in_the_mounted_stand_in(sandbox) -> None:
    # the bot's own WebClient is pointed at /sandbox/slack/api/ and authenticated
    client = sandbox.server.deps.client
    assert client.base_url == f"{sandbox.server.base_url}/sandbox/slack/api/"
    assert client.auth_test()["user_id"] == sandbox.ws.api.bot_user_id
    wrong = httpx.post(f"{sandbox.server.base_url}/sandbox/slack/api/auth.test",
                       data={"token": "xoxb-guess"}).json()
    assert wrong == {"ok": False, "error": "invalid_auth"}


def test_at_name_in_a_command_reaches_the_bot_as_a_mention_like_slack(sandbox) -> None:
    """Issue 13: Slack turns `@name` into `<@U…|name>` for a command with should_escape, so
    the README's `/o2c role add @sam sales` works in the sandbox too."""
    # given a member without the collector role
    sam = next(u for u in sandbox.state()["users"] if u["id"] == SALES)
    name = sam["real_name"].split(" ")[0].lower()
    # when the admin types @name
    response = sandbox.act("slash", user=ADMIN, channel="D" + ADMIN,
                           text=f"/o2c role add @{name} collector")
    assert response.status_code == 200, response.text
    # then the bot granted the role to that member
    answer = sandbox.wait_for(lambda: _ephemerals_of(sandbox, ADMIN, SALES), "the answer")[0]
    assert "collector" in json.dumps(answer)
    assert "collector" in next(u for u in sandbox.state()["users"] if u["id"] == SALES)["roles"]
    # and an unknown @name stays as typed
    assert sandbox.ws.escape_mentions("@nobody-here") == "@nobody-here"


def test_an_over_long_command_gets_a_short_message(sandbox) -> None:
    response = sandbox.act("slash", user=SALES, channel="D" + SALES,
                           text="/o2c customer " + "x" * 5000)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "too long" in error and "xxxx" not in error and len(error) < 200


def test_a_reloaded_page_shows_no_modal(test_listeners) -> None:
    sandbox = test_listeners
    # given a modal left open
    sandbox.act("slash", user=SALES, channel="D" + SALES, text="/o2c sandbox-form")
    sandbox.wait_for(lambda: sandbox.state()["modals"].get(SALES), "the modal")
    # when the page is loaded again
    assert sandbox.act("page-loaded").json()["closed"] == 1
    # then the modal is gone, as in a reloaded Slack client
    assert sandbox.state()["modals"].get(SALES) == []

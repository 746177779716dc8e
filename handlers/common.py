"""Helpers every listener uses: dependencies from the Bolt context, the caller's user row and
time zone, a committed transaction that wakes the outbox worker, what to tell a user about an
error, and `after_ack` for the work a listener does after its ack (Bolt's lazy listeners)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import date, datetime
from typing import Any

from slack_bolt import Ack, BoltContext, BoltRequest
from slack_bolt.kwargs_injection import build_required_kwargs
from slack_bolt.util.utils import get_arg_names_of_callable
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from blocks.i18n import Formats, formats
from blocks.text import esc, refusal
from handlers.deps import Deps, deps_of
from models import SlackEventReceipt, User
from workflows import audit, outbox
from workflows.errors import DomainError, PermissionDenied, database_unavailable
from workflows.users import ensure_user

log = logging.getLogger("o2c.handlers")

DATABASE_DOWN = ("o2c cannot reach its database right now, so nothing was changed. Please "
                 "try again in a minute.")
BROKEN = ("This button or form came back damaged, so nothing was done. Use the latest message "
          "(or open the form again) and retry.")


class Malformed(DomainError):
    """A signed Slack payload that does not carry what its listener needs (a button value
    that is not an id, unreadable `private_metadata`, missing form values): refused with a
    clear answer, nothing changed. Genuine Slack never sends these; a stale or forged one
    might."""

    status = 400
    title = "Malformed Slack payload"

    def __init__(self, detail: str = BROKEN) -> None:
        super().__init__(detail)


class Throttle:
    """True at most once per `every` seconds: a recurring condition (the database is down) is
    logged once, not once per request."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last = float("-inf")
        self._lock = threading.Lock()

    def ready(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every:
                return False
            self._last = now
            return True


_database_down_log = Throttle()


def note_database_down(error: BaseException, logger: logging.Logger = log) -> None:
    """One short warning a minute while the database is unreachable (no traceback)."""
    if _database_down_log.ready():
        logger.warning("database unavailable (%s: %s); answering 'try again' until it is back",
                       type(error).__name__, str(error).splitlines()[0][:200] if str(error)
                       else "")


def _audit_refusal(deps: Deps, refused: PermissionDenied) -> None:
    with deps.db.transaction() as session:
        audit.refusal_of(session, refused)


def _audit_refusal_later(deps: Deps, refused: PermissionDenied) -> None:
    try:
        _audit_refusal(deps, refused)
    except Exception:  # nobody waits for it: logged, with the refusal's text
        log.exception("could not audit a refusal: %s", refused)


@contextmanager
def _refusal_audited(deps: Deps, *, later: bool = False) -> Iterator[None]:
    """A PermissionDenied rolls its own transaction back; the refusal is then recorded in a
    short transaction of its own (refusals belong in the audit log, SPEC §5.7).

    `later`: in an ack (a form's checks, a select's options), the refusal is recorded in the
    work after the acks (`deps.background`), so the answer never waits for it: on SQLite a
    write waits for the one write lock, which a long job (an import, the nightly runs) may
    hold for longer than Slack's 3 seconds."""
    try:
        yield
    except PermissionDenied as refused:
        background = deps.background if later else None
        if background is None:
            _audit_refusal(deps, refused)
        else:
            background.submit(_audit_refusal_later, deps, refused)
        raise


@contextmanager
def transaction(context: BoltContext) -> Iterator[Session]:
    """A state change from a listener: commit once, then wake the outbox worker. A refusal
    (PermissionDenied) rolls the change back and is then audited on its own."""
    deps = deps_of(context)
    with _refusal_audited(deps), deps.db.transaction() as session:
        yield session
    deps.notify_outbox()


@contextmanager
def checking(context: BoltContext, *, in_ack: bool = False) -> Iterator[Session]:
    """Read-only checks (roles, segregation of duties) before opening a modal or answering.

    A read session, so on SQLite it never waits for the write lock a long job may hold (a
    trigger_id expires 3 s after the click); a refusal (PermissionDenied) is still audited.
    `in_ack`: the checks are an ack's (a form's submission, a select's options), and the
    refusal is audited after the answer (`_refusal_audited(later=True)`)."""
    deps = deps_of(context)
    with _refusal_audited(deps, later=in_ack), deps.db.read_session() as session:
        yield session


def options_for(ack: Ack, context: BoltContext, allowed: Callable[[Session], None],
                found: Callable[[Session], Any], shown: Callable[[Any], list[dict]]) -> None:
    """A select's options, answered in its ack, only for whoever `allowed` lets through (the
    role of the action or form the select belongs to: a card in a channel shows its selects
    to everyone there), checked in `checking` (a read; a refusal is audited); anyone else gets
    none. `found` reads in that session; `shown` makes the options from it afterwards."""
    try:
        with checking(context, in_ack=True) as session:
            allowed(session)
            rows = found(session)
    except PermissionDenied:
        ack(options=[])
        return
    ack(options=shown(rows))


USER_CACHE_SECONDS = 300


def caller(context: BoltContext, user_id: str, user_name: str | None = None,
           client: WebClient | None = None) -> User:
    """The calling user's row, created (with their Slack time zone) on first contact.
    Rows are cached for a few minutes: a user's name and time zone rarely change, and this
    runs on every command. Roles are never cached (they are checked on every action)."""
    deps = deps_of(context)
    seen = deps.users_seen.get(user_id)
    if seen is not None and time.monotonic() - seen[1] < USER_CACHE_SECONDS:
        return seen[0]
    with deps.db.read_session() as session:
        user = session.get(User, user_id)
    if user is not None:
        deps.users_seen[user_id] = (user, time.monotonic())
        return user
    tz, real_name, locale = "UTC", user_name, None
    info = profile(client, user_id)
    if info:
        tz = info.get("tz") or "UTC"
        real_name = info.get("real_name") or info.get("name") or user_name
        locale = info.get("locale")
    with deps.db.transaction() as session:
        user = ensure_user(session, user_id, name=real_name)
        user.timezone = tz
        user.locale = locale_tag(locale)
        user.team_id, user.enterprise_id = workspace_of(context)
        session.add(user)
    return user


SLACK_UNREACHABLE = "unreachable"  # `users_info`'s reason when no answer came


def users_info(client: WebClient, user_id: str, **params: object
               ) -> tuple[dict | None, str | None]:
    """Slack's `users.info` of `user_id`: (the user, None), or (None, why Slack did not say:
    its error code such as `user_not_found`, `SLACK_UNREACHABLE`, or "" for an answer
    without a user). Failures are logged, never raised."""
    try:
        info = client.users_info(user=user_id, **params).get("user")
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        log.info("users.info failed for %s: %s", user_id, error)
        return None, str(error)
    except (SlackClientError, OSError) as exc:
        log.info("users.info failed for %s: %r", user_id, exc)
        return None, SLACK_UNREACHABLE
    return (info, None) if isinstance(info, dict) else (None, "")


def profile(client: WebClient | None, user_id: str) -> dict | None:
    """The user's Slack profile (`users.info` with their locale), or None when Slack cannot
    say: an error, an answer without a user, Slack unreachable. Their time zone and locale
    only shape how things are written, so an answer never fails for want of them."""
    if client is None:
        return None
    return users_info(client, user_id, include_locale=True)[0]


def workspace_of(context: BoltContext) -> tuple[str | None, str | None]:
    """(team_id, enterprise_id) of the workspace a request came from (None for anything that
    is not a Slack id)."""
    return slack_id(context.team_id), slack_id(context.enterprise_id)


def record_channel_workspace(session: Session, context: BoltContext, channel: str) -> None:
    """`channel`'s posts go out through the workspace this request came from
    (`workflows.outbox.record_channel_workspace`), in the caller's transaction."""
    team_id, enterprise_id = workspace_of(context)
    outbox.record_channel_workspace(session, channel=channel, team_id=team_id,
                                    enterprise_id=enterprise_id)


def slack_id(value: object) -> str | None:
    """`value` when it is shaped like a Slack id (team, enterprise, user), else None."""
    return value if isinstance(value, str) and 0 < len(value) <= 32 and value.isalnum() else None


def remember_workspace(context: BoltContext, user_id: object) -> None:
    """After a request was answered: record the workspace its user was seen in when it
    changed (their DMs go out through that workspace's installation: `workflows.outbox`).
    Best effort, never before an answer (a modal's trigger must not wait for a write lock)."""
    team_id, enterprise_id = workspace_of(context)
    if team_id is None or slack_id(user_id) is None:
        return
    deps = deps_of(context)
    try:
        seen = deps.users_seen.get(str(user_id))
        user = seen[0] if seen is not None else None
        if user is None:  # only people the app knows (no row, no DM); read once, then cached
            with deps.db.read_session() as session:
                user = session.get(User, str(user_id))
            if user is None:
                return
            deps.users_seen[user.slack_user_id] = (user, time.monotonic())
        if (user.team_id, user.enterprise_id) == (team_id, enterprise_id):
            return
        with deps.db.transaction() as session:
            row = ensure_user(session, user.slack_user_id)
            row.team_id, row.enterprise_id = team_id, enterprise_id
            session.add(row)
        with deps.db.read_session() as session:
            fresh = session.get(User, user.slack_user_id)
        if fresh is not None:
            deps.users_seen[user.slack_user_id] = (fresh, time.monotonic())
    except Exception as error:  # the answer was given; the next request tries again
        log.info("could not record the workspace of %s: %r", user_id, error)


def locale_tag(value: object) -> str | None:
    """A Slack locale ("de-DE") fit to store; None for anything else."""
    if isinstance(value, str) and 0 < len(value) <= 35 and value.replace("-", "").replace(
            "_", "").isalnum():
        return value
    return None


def formats_of(context: BoltContext, user_id: str, client: WebClient | None) -> Formats:
    """How amounts, dates and numbers are written for this user (their Slack locale), for
    what is addressed to them alone: a DM, an ephemeral or `/o2c` answer, App Home, a modal.
    Without `client`, only a locale known already is used (nothing is asked or written:
    before opening a modal, whose trigger expires)."""
    return formats(locale_of(context, user_id, client))


def known_formats(context: BoltContext, user_id: str) -> tuple[Formats, bool]:
    """The reader's formats from what is known already — the dependencies' caches, else their
    row (one read) — and whether their locale is known: for what is answered at ack time (an
    option list) or before a modal opens. Never asks Slack, never writes; unknown: the app's
    formats (`open_modal_for` then looks it up and updates the modal)."""
    deps = deps_of(context)
    known = deps.locales.get(user_id)
    if known is not None and time.monotonic() - known[1] < USER_CACHE_SECONDS:
        return formats(known[0]), True
    seen = deps.users_seen.get(user_id)
    locale = seen[0].locale if seen is not None else None
    if locale is None:
        with deps.db.read_session() as session:
            user = session.get(User, user_id)
        locale = user.locale if user is not None else None
    if locale is None:
        return formats(None), False
    deps.locales[user_id] = (locale, time.monotonic())
    return formats(locale), True


def locale_of(context: BoltContext, user_id: str, client: WebClient | None) -> str | None:
    """The user's Slack locale (`users.info` with `include_locale`), for formatting amounts,
    dates and texts (`blocks.i18n`). Cached on their row: looked up once, then read from the
    database (and the dependencies' caches: users seen, locales looked up — also when Slack
    did not say, so nobody is asked again for a while); None when Slack does not say
    (English)."""
    deps = deps_of(context)
    known = deps.locales.get(user_id)
    if known is not None and time.monotonic() - known[1] < USER_CACHE_SECONDS:
        return known[0]
    locale = _look_up_locale(context, user_id, client)
    if locale is not None or client is not None:  # known, or Slack was asked
        deps.locales[user_id] = (locale, time.monotonic())
    return locale


def _look_up_locale(context: BoltContext, user_id: str, client: WebClient | None
                    ) -> str | None:
    user = caller(context, user_id, client=client)
    if user.locale or client is None:
        return user.locale
    locale = locale_tag((profile(client, user_id) or {}).get("locale"))
    if locale is None:
        return None
    deps = deps_of(context)
    with deps.db.transaction() as session:
        row = ensure_user(session, user_id)
        row.locale = locale
        session.add(row)
    with deps.db.read_session() as session:
        fresh = session.get(User, user_id)
    if fresh is not None:
        deps.users_seen[user_id] = (fresh, time.monotonic())
    return locale


def spoken(error: DomainError) -> str:
    """A refusal's reason as a person reads it. The API's detail names the request's field
    ("apply_to: no invoice INV-9", "lines[2].quantity: …"); in Slack the field is said in
    words ("apply to: …", "lines 3 quantity: …")."""
    if len(error.errors) == 1:
        field, detail = error.errors[0].field, error.errors[0].detail
        if error.detail == f"{field}: {detail}" and re.fullmatch(r"[\w.\[\]]+", field):
            words = re.sub(r"\[(\d+)\]", lambda m: f" {int(m.group(1)) + 1}", field)
            return f"{words.replace('_', ' ').replace('.', ' ')}: {detail}"
    return error.detail


def describe_error(error: Exception, logger: logging.Logger = log, *,
                   plain: bool = False, what: str | None = None) -> str:
    """What to tell the user about a failed request (mrkdwn, or `plain` text for a modal's
    inline errors). A refusal — a role, a rule, bad input: any `DomainError` — has the one
    shape of every refusal (`blocks.text.refusal`, "Can't <what>: …" when `what` is given).
    Unexpected errors are logged once, with a reference the user can quote, and never shown
    (no stack traces, no secrets); an unreachable database is said so plainly and logged once
    a minute, without a traceback: those are failures, not refusals, and look different."""
    if isinstance(error, DomainError):  # (its detail may quote the input: escaped)
        return error.detail if plain else refusal(esc(spoken(error)), what=what)
    if database_unavailable(error):
        note_database_down(error, logger)
        return DATABASE_DOWN if plain else f":hourglass: {DATABASE_DOWN}"
    ref = uuid.uuid4().hex[:8]
    logger.error("unhandled error ref=%s", ref, exc_info=error)
    if plain:
        return f"Sorry, something went wrong on our side (ref {ref}). Nothing was changed."
    return f"Sorry, something went wrong on our side (ref `{ref}`). Nothing was changed."


# -- reading what Slack sent (a signed payload can still be malformed) ----------------------------
def action_value(body: dict) -> str:
    """The clicked button's value; `Malformed` when there is none."""
    actions = body.get("actions")
    value = actions[0].get("value") if isinstance(actions, list) and actions and isinstance(
        actions[0], dict) else None
    if not isinstance(value, str) or not value:
        raise Malformed()
    return value


def action_id_value(body: dict) -> int:
    """The clicked button's value as a record id; `Malformed` unless it is a positive int."""
    value = action_value(body).strip()
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**63:
        raise Malformed()
    return int(value)


def click_key(body: dict) -> str | None:
    """This click's identity, for clicks whose effect could be undone and redone (a choice, a
    hold and its release): a replay of an old click must not redo it. Slack stamps every click
    with its own `action_ts`; a replay or a retry carries the same one."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else {}
    stamp, action_id = action.get("action_ts"), action.get("action_id")
    user = (body.get("user") or {}).get("id")
    if not (isinstance(stamp, str) and stamp and isinstance(action_id, str) and user):
        return None
    return f"click:{action_id}:{user}:{stamp}"


def view_metadata(view: dict) -> dict:
    """A modal's `private_metadata` (JSON we wrote when opening it); `Malformed` otherwise."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        raise Malformed() from None
    if not isinstance(data, dict):
        raise Malformed()
    return data


def metadata_id(meta: dict, key: str) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str) or not (
            str(value).isascii() and str(value).isdigit()):
        raise Malformed()
    return int(value)


def form_value(view: dict, block_id: str, action_id: str) -> dict:
    """The state of one input of a submitted modal ({} when absent)."""
    values = (view.get("state") or {}).get("values") or {}
    entry = (values.get(block_id) or {}).get(action_id)
    return entry if isinstance(entry, dict) else {}


def open_modal(client: WebClient, trigger_id: Any, view: dict) -> bool:
    """`views.open` for a click or command. A trigger Slack says was already used means this
    request is a replay of one that opened the modal: nothing more to do (False). A trigger
    that expired (the server was slow) is explained: click again."""
    if not isinstance(trigger_id, str) or not trigger_id:
        raise Malformed()
    return _views_open(client, trigger_id, view) is not None


def open_modal_for(context: BoltContext, client: WebClient, trigger_id: Any, user_id: str,
                   build: Callable[[Formats], dict]) -> bool:
    """`open_modal` of the view `build(fmt)` makes, in its reader's formats. A locale known
    already (`known_formats`) is used at once; else the modal opens in the app's formats
    first (its trigger expires: Slack is not asked before), then the locale is looked up
    (`locale_of`: `users.info`, cached) and, when it is not the app's, the modal is updated
    in place (`views.update`, guarded by the view's hash: a modal its user changed already
    stays as it is)."""
    fmt, known = known_formats(context, user_id)
    if not isinstance(trigger_id, str) or not trigger_id:
        raise Malformed()
    opened = _views_open(client, trigger_id, build(fmt))
    if opened is None or known:
        return opened is not None
    try:  # best effort: the modal is open already, in the app's formats
        theirs = formats(locale_of(context, user_id, client))
        view = opened.get("view") if isinstance(opened.get("view"), dict) else {}
        if theirs != fmt and view.get("id"):
            client.views_update(view_id=view["id"], hash=view.get("hash"), view=build(theirs))
    except SlackApiError as exc:  # changed or closed meanwhile: it stays as opened
        log.info("modal not updated to the reader's formats: %s", exc.response.get("error"))
    except Exception as error:  # the database, the network: it stays as opened
        log.info("modal not updated to the reader's formats: %r", error)
    return True


def _views_open(client: WebClient, trigger_id: str, view: dict) -> Any:
    """views.open's answer; None when the trigger was used before (a replayed request)."""
    try:
        return client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if error == "exchanged_trigger_id":
            log.info("modal not opened: its trigger was used before (a replayed request)")
            return None
        if error in ("expired_trigger_id", "invalid_trigger_id"):
            raise DomainError("Slack did not let the form open in time; please try again."
                              ) from None
        raise


def first_input_block(view: Any) -> str | None:
    """The block_id of a modal's first input: where an error about the whole form is shown."""
    blocks = view.get("blocks") if isinstance(view, dict) else None
    for block in blocks if isinstance(blocks, list) else []:
        if isinstance(block, dict) and block.get("type") == "input" and isinstance(
                block.get("block_id"), str):
            return block["block_id"]
    return None


def tell_user(body: dict, respond: Any, client: WebClient, text: str) -> None:
    """Say something only the acting user sees: ephemeral where they clicked or typed, else
    (a modal, the App Home tab) in their DM with the bot."""
    if respond is not None and body.get("response_url"):
        respond(text=text, response_type="ephemeral", replace_original=False)
    else:
        user = body.get("user") or {}
        user_id = user.get("id") if isinstance(user, dict) else body.get("user_id")
        if user_id:
            client.chat_postMessage(channel=user_id, text=text)


# -- slow work after the ack: Bolt's lazy listeners ------------------------------------------------
def acknowledge(ack: Ack) -> None:
    """The ack of a listener whose work all happens after it (`lazy=[...]`): an empty 200 now,
    nothing shown until the lazy listener answers."""
    ack()


REQUEST_ID = "o2c_request_id"  # the request id `bot.server` puts in the Bolt context
# the id of an Events API event not seen before (`bot.slack_app.Dependencies`): its listener
# records it right after the ack, before doing anything, and does nothing for a copy
EVENT_RECEIPT = "o2c_event_receipt"


def after_ack(func: Callable[..., None]) -> Callable[[BoltRequest], None]:
    """`func` as a lazy listener (`app.action(ID)(ack=acknowledge, lazy=[after_ack(func)])`)
    whose errors reach the app's error handler like any other listener's.

    Bolt runs a lazy listener after the ack, in its listener executor, with the arguments any
    listener gets (`body`, `respond`, `client`, `context`, ...), but only logs what it raises
    (`slack_bolt.lazy_listener.internals`): the user would never hear of a failure. Here the
    arguments are built by Bolt's own `build_required_kwargs`, and an error goes to the app's
    `@app.error` handler (`bot.slack_app`) with no response (`response=None`: the request was
    answered already), which tells the user and logs once.

    Bolt also starts lazy listeners whatever the ack said; `func` runs only when the ack
    accepted the request (`accepted`), so a form refused with inline errors does nothing more.
    An event runs once: its id (`EVENT_RECEIPT`) is recorded first, in a transaction of its
    own, and a copy of it (a Slack retry) does nothing (`first_delivery`).
    """
    wanted = get_arg_names_of_callable(func)

    def lazy_listener(request: BoltRequest) -> None:
        if not accepted(request.context.ack):
            return
        deps = request.context.get("deps")
        scope = (deps.answering(request.body, request.context.get(REQUEST_ID))
                 if hasattr(deps, "answering") else nullcontext())
        with scope:
            try:
                event_id = request.context.get(EVENT_RECEIPT)
                if event_id and not first_delivery(deps, event_id):
                    log.info("duplicate event %s ignored", event_id)
                    return
                func(**build_required_kwargs(logger=request.context.logger,
                                             required_arg_names=wanted, request=request,
                                             response=None, this_func=func))
            except Exception as error:
                request.context.listener_runner.listener_error_handler.handle(
                    error=error, request=request, response=None)
            if deps is not None and _from_a_person(request.body):
                remember_workspace(request.context, request.context.user_id)

    # Bolt names a lazy listener after its function (logs); it must not unwrap to `func`,
    # or it would inject `func`'s arguments instead of the request
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(lazy_listener, attribute, getattr(func, attribute))
    return lazy_listener


def first_delivery(deps: Deps, event_id: str) -> bool:
    """Record an event's id; False when it was recorded before (a copy of the event: a
    Slack retry, or two copies running at once — the unique id decides)."""
    try:
        with deps.db.transaction() as session:
            session.add(SlackEventReceipt(event_id=event_id))
        return True
    except IntegrityError:
        return False


def _from_a_person(body: dict) -> bool:
    """A person's own request (a command, a click, a form, a shortcut, opening App Home),
    not one of the events every message in a channel brings."""
    if not isinstance(body, dict) or body.get("type") != "event_callback":
        return True
    event = body.get("event")
    return isinstance(event, dict) and event.get("type") == "app_home_opened"


def accepted(ack: Ack) -> bool:
    """Whether the ack accepted the request: a 200 that is not a form's inline errors (nor an
    error handler's answer to an ack function that failed before acking)."""
    response = ack.response
    if response is None or response.status != 200:
        return False
    if not response.body:
        return True
    try:
        answer = json.loads(response.body)
    except ValueError:
        return True
    return not (isinstance(answer, dict) and answer.get("response_action") == "errors")


# -- the clock (bot/clock.py, carried on the dependencies) ---------------------------------------
def now_of(context: BoltContext) -> datetime:
    """This moment (aware, UTC) by the app's one clock."""
    return deps_of(context).clock.now()


def today_for(context: BoltContext, user: User) -> date:
    """Today in the user's Slack time zone (an unknown or missing zone is UTC): every "today" a
    person sees — days past due, aging, the default date of a form — is this one."""
    return deps_of(context).clock.today(user.timezone)

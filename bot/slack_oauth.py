"""OAuth install ("Add to Slack"), with Bolt's and slack_sdk's own machinery.

With `SLACK_CLIENT_ID` and `SLACK_CLIENT_SECRET` set, `/slack/install` starts Bolt's OAuth flow
(`OAuthSettings`: `state` issued and verified, kept in `slack_oauth_states`), and
`/slack/oauth_redirect` stores the installation through slack_sdk's
`SQLAlchemyInstallationStore` in our own database (tables made by migration 0016_oauth). Bolt
then finds each request's bot token by its workspace (or Enterprise Grid org) and rotates it
before it expires (token rotation); the outbox worker asks `BotTokens` for the token of the
workspace each row is for (`outbox.team_id`: a DM goes through its reader's workspace, a
thread reply through the channel's; the company's own channels and older rows through the
default installation: the org's, else the installer's workspace). Without those settings
nothing of this runs: `SLACK_BOT_TOKEN` is the one token.

One company's books per database: the first installation binds the database to its Slack
Enterprise Grid org (or, outside Grid, its workspace), recorded in the append-only audit log
(`slack.installed`); installing into another workspace of the same org shares the books, an
installation from anywhere else is refused before anything is stored. The installer becomes
the first admin when there is none yet (`O2C_ADMINS` may have named some already).

Uninstalling (`app_uninstalled`) or revoking the bot token (`tokens_revoked`) deletes the
tokens of that workspace (Bolt's own listeners) and is audited; no O2C data is touched. With
no token left, the outbox delivers nothing to Slack: its messages wait in the queue
(`pending`, no attempt counted, looked at again every minute: `bot.outbox.NOT_INSTALLED_WAIT`)
and go out once the app is installed again; customer e-mails do not need Slack and go on.

Token lookups are cached per workspace for `CACHE_SECONDS` in each process (a request does not
wait for the database to find its token); a save or delete in this process clears the cache,
another process sees it within `CACHE_SECONDS`.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from slack_bolt import BoltResponse
from slack_bolt.authorization.authorize import InstallationStoreAuthorize
from slack_bolt.error import BoltError
from slack_bolt.oauth.callback_options import CallbackOptions, FailureArgs, SuccessArgs
from slack_bolt.oauth.oauth_flow import OAuthFlow
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.sqlalchemy_utils import normalize_datetime_for_db
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation import TokenRotator

from handlers.common import note_database_down
from models import AuditEvent
from models.slack_install import BOTS, INSTALLATIONS, OAUTH_STATES
from workflows import audit
from workflows.errors import database_unavailable
from workflows.users import install_admin

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.db import Database
    from bot.settings import Settings

log = logging.getLogger("o2c.oauth")

# The bot scopes asked for at install (manifest.yml's, and no more).
BOT_SCOPES = ("chat:write", "commands", "users:read", "channels:history", "groups:history",
              "im:history", "im:write", "links:read", "links:write")
CACHE_SECONDS = 30.0
STATE_SECONDS = 600  # an install started must be finished within 10 minutes
ROTATE_MINUTES = 120  # tokens are refreshed when they expire within 2 hours (Bolt's default)
INSTALLED = "slack.installed"


class ForeignInstall(BoltError):
    """An installation from another Slack org than the one whose books this database keeps."""


class SlackUnreachable(BoltError):
    """Slack did not answer the token exchange (oauth.v2.access, then auth.test): a timeout, a
    refused connection. Nothing was stored; the installer starts again."""


class InstallFlow(OAuthFlow):
    """Bolt's OAuth flow, with Slack not answering the token exchange told to the installer on
    a page (502) instead of a 500: Bolt itself only handles Slack's error answers there."""

    def run_installation(self, code: str) -> Installation | None:
        try:
            return super().run_installation(code)
        except (SlackClientError, OSError) as error:  # TimeoutError, URLError: both OSErrors
            raise SlackUnreachable(type(error).__name__) from None

    def handle_installation(self, request: BoltRequest) -> BoltResponse:
        try:
            return super().handle_installation(request)
        except Exception as error:
            if not database_unavailable(error):
                raise
            note_database_down(error, log)
            return _database_down_page()

    def handle_callback(self, request: BoltRequest) -> BoltResponse:
        try:
            return super().handle_callback(request)
        except SlackUnreachable as error:
            return self.failure_handler(FailureArgs(
                request=request, reason="slack_unreachable", error=error,
                suggested_status_code=502, settings=self.settings,
                default=self.default_callback_options))
        except Exception as error:
            if not database_unavailable(error):
                raise
            note_database_down(error, log)
            return _database_down_page()


def org_of(enterprise_id: str | None, team_id: str | None) -> dict:
    """What binds a database to Slack: the Grid org, or the workspace outside Grid."""
    return {"enterprise_id": enterprise_id} if enterprise_id else {"team_id": team_id}


class InstallationStore(SQLAlchemyInstallationStore):
    """slack_sdk's SQLAlchemy store on our database, refusing installations from another org,
    with the token lookups cached per workspace (`CACHE_SECONDS`)."""

    def __init__(self, client_id: str, db: Database, *, ttl: float = CACHE_SECONDS,
                 client: WebClient | None = None) -> None:
        super().__init__(client_id, db.engine, bots_table_name=BOTS,
                         installations_table_name=INSTALLATIONS)
        self.db = db
        self.client = client  # the Web API (SLACK_API_URL): a refused org's token given back
        self.ttl = ttl
        self._cache: dict[tuple, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def _give_back(self, installation: Installation) -> None:
        """A refused org's bot token, which Slack issued and we will never use, is revoked
        (`auth.revoke`) rather than left valid in nobody's hands; best effort: a failure is
        logged (without the token), the refusal stands either way."""
        if self.client is None or not installation.bot_token:
            return
        try:
            WebClient(token=installation.bot_token, base_url=self.client.base_url,
                      timeout=self.client.timeout).auth_revoke()
        except Exception as error:  # Slack down, the token already gone, ...
            log.warning("could not revoke the token of a refused installation (team %s): %s",
                        installation.team_id or installation.enterprise_id,
                        type(error).__name__)

    # -- one company's books per database ----------------------------------------------------
    def home_org(self) -> dict | None:
        """The org the first installation bound this database to (None before any)."""
        with self.db.read_session() as session:
            return _home_org(session)

    def save(self, installation: Installation) -> None:
        """Check the org and record the installation (`slack.installed`) in one transaction
        holding the install lock, before the token is stored: the first one binds the
        database, and an installation from another org finishing at the same moment waits
        for it and is refused (checked after the first one's token was stored, it found no
        binding yet and was stored too)."""
        org = org_of(installation.enterprise_id, installation.team_id)
        with self.db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE
                session.execute(sa.text(
                    "SELECT pg_advisory_xact_lock(hashtext('o2c.slack_install'))"))
            home = _home_org(session)
            refused = home is not None and home != org
            if refused:
                audit.refusal(session, actor=installation.user_id or "slack",
                              action=INSTALLED, entity_type="slack_workspace",
                              entity_id=installation.team_id or installation.enterprise_id,
                              reason="an installation from another Slack organisation",
                              enterprise_id=installation.enterprise_id,
                              team_id=installation.team_id)
            else:
                audit.record(session, actor=installation.user_id, action=INSTALLED,
                             entity_type="slack_workspace",
                             entity_id=installation.team_id or installation.enterprise_id,
                             enterprise_id=installation.enterprise_id,
                             team_id=installation.team_id,
                             enterprise_install=bool(installation.is_enterprise_install),
                             scopes=installation.bot_scopes)
        if refused:  # the refusal audited (committed), nothing stored
            self._give_back(installation)
            raise ForeignInstall("this o2c server keeps the books of another Slack "
                                 "organisation; install it from a workspace of that one")
        super().save(installation)
        self.forget()

    def save_bot(self, bot: Bot) -> None:
        super().save_bot(bot)
        self.forget()

    # -- cached lookups ----------------------------------------------------------------------
    def _cached(self, key: tuple, load: Any) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[1] > now:
                return hit[0]
        value = load()
        with self._lock:
            self._cache[key] = (value, now + self.ttl)
        return value

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                 is_enterprise_install: bool | None = False) -> Bot | None:
        return self._cached(("bot", enterprise_id, team_id, bool(is_enterprise_install)),
                            lambda: super(InstallationStore, self).find_bot(
                                enterprise_id=enterprise_id, team_id=team_id,
                                is_enterprise_install=is_enterprise_install))

    def find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                          user_id: str | None = None,
                          is_enterprise_install: bool | None = False) -> Installation | None:
        return self._cached(
            ("installation", enterprise_id, team_id, user_id, bool(is_enterprise_install)),
            lambda: super(InstallationStore, self).find_installation(
                enterprise_id=enterprise_id, team_id=team_id, user_id=user_id,
                is_enterprise_install=is_enterprise_install))

    def home_team(self) -> tuple[str | None, str | None] | None:
        """(enterprise_id, team_id) of the first installation: the installer's workspace,
        where the company's own channels (approvals, alerts, AR) are."""
        with self.db.read_session() as session:
            first = _first_install(session)
        if first is None:
            return None
        data = first.data or {}
        return data.get("enterprise_id"), data.get("team_id")

    def latest_bot(self) -> Bot | None:
        """The default installation's bot (rows for no workspace in particular: the company's
        own channels, rows queued before deliveries were per workspace): the org-wide
        installation's if there is one, else the installer's workspace's while it is
        installed, else the most recently installed workspace's (all are of one org)."""
        def load() -> Bot | None:
            c = self.bots.c
            query = (self.bots.select().where(c.client_id == self.client_id,
                                              c.bot_token.is_not(None))
                     .order_by(c.is_enterprise_install.desc(), c.installed_at.desc(),
                               c.id.desc()).limit(1))
            with self.engine.connect() as conn:
                row = conn.execute(query).mappings().first()
            latest = None if row is None else self.build_bot_entity(row)
            if latest is None or latest.is_enterprise_install:
                return latest
            home = self.home_team()
            if home is None or home[1] is None:
                return latest
            return super(InstallationStore, self).find_bot(
                enterprise_id=home[0], team_id=home[1]) or latest
        return self._cached(("latest",), load)

    def bot_of(self, enterprise_id: str | None, team_id: str | None) -> Bot | None:
        """The bot of the installation a workspace's deliveries go through: the workspace's
        own, else its Grid org's org-wide installation; None when neither is installed."""
        bot = self.find_bot(enterprise_id=enterprise_id, team_id=team_id)
        if bot is None and enterprise_id is not None and team_id is not None:
            bot = self.find_bot(enterprise_id=enterprise_id, team_id=None,
                                is_enterprise_install=True)
        return bot

    def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        super().delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        self.forget()

    def delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                            user_id: str | None = None) -> None:
        super().delete_installation(enterprise_id=enterprise_id, team_id=team_id,
                                    user_id=user_id)
        self.forget()


def _first_install(session: Any) -> AuditEvent | None:
    return session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == INSTALLED).order_by(AuditEvent.id).limit(1)).scalars().first()


def _home_org(session: Any) -> dict | None:
    first = _first_install(session)
    return None if first is None else org_of((first.data or {}).get("enterprise_id"),
                                             (first.data or {}).get("team_id"))


class StateStore(SQLAlchemyOAuthStateStore):
    """slack_sdk's SQLAlchemy state store on our database and our one clock; a state is
    consumed by one conditional DELETE, so two callbacks with the same state (a replay, a
    double submit) cannot both pass, even in two processes. Issuing one deletes the expired
    ones: anyone may open /slack/install, and installs started and abandoned would otherwise
    pile up for good (the table holds only the states of the last `STATE_SECONDS`)."""

    def __init__(self, db: Database, clock: Clock, *, expiration_seconds: int = STATE_SECONDS
                 ) -> None:
        super().__init__(expiration_seconds=expiration_seconds, engine=db.engine,
                         table_name=OAUTH_STATES)
        self.clock = clock

    def issue(self, *args: Any, **kwargs: Any) -> str:
        import uuid

        state = str(uuid.uuid4())
        now = self.clock.now()
        expire_at = now + timedelta(seconds=self.expiration_seconds)
        with self.engine.begin() as conn:
            conn.execute(self.oauth_states.delete().where(
                self.oauth_states.c.expire_at <= normalize_datetime_for_db(now)))
            conn.execute(self.oauth_states.insert(),
                         {"state": state, "expire_at": normalize_datetime_for_db(expire_at)})
        return state

    def consume(self, state: str) -> bool:
        if not state:
            return False
        c = self.oauth_states.c
        now = normalize_datetime_for_db(self.clock.now())
        with self.engine.begin() as conn:
            deleted = conn.execute(self.oauth_states.delete().where(
                c.state == state, c.expire_at > now))
            return deleted.rowcount == 1


@dataclass
class Installations:
    """The OAuth install of a process: the stores, Bolt's settings, the outbox's tokens."""

    settings: OAuthSettings
    flow: InstallFlow  # /slack/install and /slack/oauth_redirect (the App's oauth_flow)
    authorize: InstallationStoreAuthorize  # Bolt's, per request: token by team, rotated
    store: InstallationStore
    tokens: BotTokens


class BotTokens:
    """The bot token the outbox sends a row with (OAuth mode): its workspace's installation
    (`InstallationStore.bot_of`, the same lookup as Bolt's authorize), or the default one
    (`InstallationStore.latest_bot`) for a row of no workspace in particular; refreshed
    through slack_sdk's `TokenRotator` when it expires within `ROTATE_MINUTES`. None when
    that installation is not there (not installed, uninstalled)."""

    def __init__(self, store: InstallationStore, rotator: TokenRotator) -> None:
        self.store = store
        self.rotator = rotator
        self._lock = threading.Lock()

    def current(self, enterprise_id: str | None = None,
                team_id: str | None = None) -> str | None:
        with self._lock:  # one rotation at a time in this process
            bot = (self.store.bot_of(enterprise_id, team_id) if enterprise_id or team_id
                   else self.store.latest_bot())
            if bot is None:
                return None
            rotated = self.rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=ROTATE_MINUTES)
            if rotated is not None:
                self.store.save_bot(rotated)
                bot = rotated
            return bot.bot_token


def build_installations(settings: Settings, db: Database, clock: Clock,
                        client: WebClient) -> Installations:
    client_id = settings.slack_client_id or ""
    client_secret = settings.secret("slack_client_secret") or ""
    store = InstallationStore(client_id, db, client=client)
    redirect_uri = (f"{settings.o2c_public_url}/slack/oauth_redirect"
                    if settings.o2c_public_url else None)
    authorization_url = None  # Slack's own (https://slack.com/oauth/v2/authorize)
    if settings.o2c_sandbox:  # the local sandbox plays Slack's "Allow" page too
        from sandbox.web import PREFIX, sandbox_origin

        authorization_url = f"{sandbox_origin(settings)}{PREFIX}/oauth/authorize"
    oauth_settings = OAuthSettings(
        client_id=client_id, client_secret=client_secret, scopes=list(BOT_SCOPES),
        user_scopes=[], redirect_uri=redirect_uri,
        installation_store=store, installation_store_bot_only=True,
        token_rotation_expiration_minutes=ROTATE_MINUTES,
        state_store=StateStore(db, clock), state_expiration_seconds=STATE_SECONDS,
        authorization_url=authorization_url,
        callback_options=CallbackOptions(success=_installed(db, store),
                                         failure=_failed),
        logger=log)
    rotator_client = WebClient(base_url=client.base_url, timeout=client.timeout)
    # Bolt's own authorize, given the Web API client (SLACK_API_URL) for its rotations and
    # its auth.test, whose answer it keeps per token (`cache_enabled`): a request costs no
    # Web API call, and the token itself comes from the store's cache per team
    authorize = InstallationStoreAuthorize(
        logger=log, installation_store=store, client_id=client_id,
        client_secret=client_secret, token_rotation_expiration_minutes=ROTATE_MINUTES,
        bot_only=True, cache_enabled=True, client=rotator_client)
    rotator = TokenRotator(client_id=client_id, client_secret=client_secret,
                           client=rotator_client)
    # the App gives the flow its Web API client (SLACK_API_URL), as with oauth_settings
    flow = InstallFlow(settings=oauth_settings, logger=log)
    return Installations(settings=oauth_settings, flow=flow, authorize=authorize, store=store,
                         tokens=BotTokens(store, rotator))


def _installed(db: Database, store: InstallationStore) -> Any:
    def success(args: SuccessArgs) -> BoltResponse:
        """After the installation is stored (and audited, binding the database to its org the
        first time: `InstallationStore.save`): make the installer the first admin when there
        is none, then Slack's page."""
        installation = args.installation
        with db.transaction() as session:
            install_admin(session, user_id=installation.user_id)
        store.forget()
        return args.default.success(args)
    return success


def _failed(args: FailureArgs) -> BoltResponse:
    """Bolt's failure page, saying why when an installation from another org was refused or
    Slack did not answer the token exchange."""
    if isinstance(args.error, ForeignInstall):
        log.warning("refused an installation: %s", args.error)
        return _not_installed(403, html.escape(str(args.error)))
    if isinstance(args.error, SlackUnreachable):
        log.warning("OAuth install failed: Slack did not answer the token exchange (%s)",
                    args.error)
        return _not_installed(502, "Slack did not answer while the installation was being "
                              "finished; nothing was stored. Please "
                              '<a href="/slack/install">start again</a> in a minute.')
    log.warning("OAuth install failed: %s", args.reason)
    return args.default.failure(args)


def _database_down_page() -> BoltResponse:
    """The installer's page when the database cannot be reached (an API client gets a 503
    problem document from the app's handler; a browser gets this)."""
    return _not_installed(503, "o2c cannot reach its database right now. Please "
                          '<a href="/slack/install">start again</a> in a minute.')


def _not_installed(status: int, message_html: str) -> BoltResponse:
    body = f"<html><body><h2>o2c was not installed</h2><p>{message_html}</p></body></html>"
    return BoltResponse(status=status, body=body,
                        headers={"Content-Type": "text/html; charset=utf-8"})


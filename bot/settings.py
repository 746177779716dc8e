"""Settings: every environment variable of SPEC §4 in one pydantic-settings class.

Secrets are `SecretStr` so they never show up in a repr, a log line or an error message;
`DATABASE_URL` (which may hold a PostgreSQL password) stays a plain string for SQLAlchemy and
Alembic but is left out of the repr, and validation errors never echo a value.
Which variables are *required* depends on the command (`o2c migrate` needs only the database),
so presence is checked by `Settings.require(...)`, which names the missing variables.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workflows.policy import Policy

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
POLICY = Policy()  # the defaults of the policy settings
PAY_SECRETS_MISSING = ("STRIPE_API_KEY needs O2C_PAY_LINK_SECRETS (or O2C_LINK_SECRETS): the "
                       "Pay now links' tokens are derived from it, e.g. openssl rand -hex 32")


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the environment variable."""


def smtp_insecure(query: str) -> bool:
    """`SMTP_URL`'s only option, `?insecure=true`: allow logging in without TLS (a local test
    server); raises ValueError for anything else, so a typo is not silently ignored."""
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"insecure"})
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; the only one is ?insecure=true")
    value = options.get("insecure", ["false"])[-1].lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("?insecure= must be true or false")
    return value in ("true", "1", "yes")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # OAuth install ("Add to Slack" at /slack/install): with both, tokens come from the
    # installations kept in the database (bot.slack_oauth) instead of SLACK_BOT_TOKEN
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None

    # storage and HTTP
    database_url: str = Field(default="sqlite:///o2c.db", repr=False)  # may hold a password
    o2c_api_token: SecretStr | None = None
    port: int = Field(default=3000, ge=1, le=65535)

    # channels and people
    o2c_approvals_channel: str = "approvals"
    o2c_alerts_channel: str = "alerts"
    o2c_ar_channel: str = "ar"
    o2c_admins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # e-mail
    smtp_url: SecretStr | None = None
    o2c_from_email: str = "billing@example.com"

    # policy (SPEC §3): the defaults are `workflows.policy.Policy`'s; admins override these
    # at run time (`/o2c policy set`)
    o2c_max_discount_pct: Decimal = POLICY.max_discount_pct
    o2c_overdue_hold_days: int = POLICY.overdue_hold_days
    o2c_approval_reminder_hours: int = POLICY.approval_reminder_hours
    o2c_working_hours: str = POLICY.working_hours
    o2c_business_timezone: str = POLICY.business_timezone
    o2c_holidays: str = POLICY.holidays
    o2c_dunning_levels: str = POLICY.dunning_levels
    o2c_cashapp_confidence: Decimal = POLICY.cashapp_confidence

    # back office (SPEC §3 "Back office"); each optional
    o2c_disputes_channel: str | None = None  # where dispute cards go (else the sales rep)
    o2c_approval_tiers: str = ""  # e.g. credit:100000:admin,credit_note:5000:admin
    o2c_late_fees: str = ""  # e.g. 7:fee=25.00,30:rate=8 (off when empty)
    o2c_small_balance_write_off: Decimal = Field(default=Decimal("1.00"), ge=0)  # 0 = off
    # a dunning run that would send more e-mails waits for an admin (`/o2c dunning confirm`)
    o2c_dunning_confirm_above: int = Field(default=200, ge=0, le=10_000_000)
    o2c_home_currency: str = "USD"  # what tier and waiver amounts are stated in
    o2c_dispute_reminder_days: int = Field(default=2, ge=0, le=365)
    o2c_dispute_escalation_days: int = Field(default=5, ge=0, le=365)
    o2c_fee_waiver_approval: Decimal = Field(default=Decimal("50.00"), ge=0)

    # `o2c import bank-statement` of a CSV export: the order of its dates, when the file does
    # not show it (no day above 12): "auto" refuses such a file, "dmy" or "mdy" reads it
    o2c_bank_csv_date_order: Literal["auto", "dmy", "mdy"] = "auto"

    # local sandbox (never on unless asked for)
    o2c_sandbox: bool = False

    # operations (issue 18): log lines as JSON objects (with the request id), `/metrics`
    o2c_log_format: Literal["text", "json"] = "text"

    # integrations (each optional: without it that feature is off and nothing else changes)
    # where customers and providers reach this server (https://o2c.example.com): the "Pay
    # now" links and Stripe's return pages; needed with STRIPE_API_KEY
    o2c_public_url: str | None = None
    stripe_api_key: SecretStr | None = None  # "Pay now" links (Stripe Checkout), fees
    stripe_webhook_secret: SecretStr | None = None  # POST /webhooks/stripe (whsec_...)
    hubspot_access_token: SecretStr | None = None  # deals -> orders, order status -> deals
    hubspot_client_secret: SecretStr | None = None  # POST /webhooks/hubspot (signature v3)
    hubspot_api_url: str = "https://api.hubapi.com"  # tests point it at a stand-in
    # pipelines, stages and properties of the HubSpot connector (bot/hubspot.py, JSON)
    o2c_hubspot_mapping: Annotated[dict, NoDecode] = Field(default_factory=dict)
    # customer links (issue 19): HMAC secrets, comma-separated, the first signs and every
    # one verifies (rotate by putting a new one first, drop the old one when its links have
    # expired); without them (or O2C_PUBLIC_URL) e-mails carry no links and /c/ answers 404
    o2c_link_secrets: SecretStr | None = None
    # "Pay now" links (workflows.payment_links): HMAC secrets the links' tokens are derived
    # from (only a hash of a token is stored), comma-separated, the first makes new links and
    # every one rebuilds the links it made; unset, O2C_LINK_SECRETS's. Pay now links never
    # expire: never drop a secret that made some (the URLs it made would change)
    o2c_pay_link_secrets: SecretStr | None = None
    # outbound webhooks (bot/webhooks_out.py): deliveries go to public addresses only; on,
    # endpoints on this computer or a private network are allowed too (a developer's local
    # receiver; `o2c demo` turns it on). A rotated signing secret keeps signing beside the new
    # one this many hours (`o2c webhooks rotate`)
    o2c_webhooks_allow_private: bool = False
    o2c_webhooks_secret_grace_hours: int = Field(default=24, ge=0, le=24 * 30)
    # how long an Idempotency-Key of the REST API is kept (a retry with it replays its first
    # answer) before the hourly `idempotency-keys` job forgets it (api/idempotency.py)
    o2c_idempotency_retention_hours: int = Field(default=24 * 30, ge=24, le=24 * 3660)
    # how long the outbound webhooks' delivery log (one row per attempt) is kept before the
    # hourly `log-retention` job deletes it (an attempt of a delivery still retried is kept)
    o2c_webhook_log_retention_days: int = Field(default=90, ge=1, le=3660)
    # carrier -> tracking URL template with {tracking}, added to or replacing the built-in
    # ones (bot/customer_links.py), e.g. "acme=https://track.acme.example/?n={tracking}"
    o2c_tracking_urls: str = ""

    # background work inside `o2c serve`
    o2c_outbox_worker: bool = True
    # how long a message being sent stays claimed by a process that stopped renewing the claim
    # (it died) before another process takes it over; renewed every third of it (bot/outbox.py)
    o2c_outbox_lease_seconds: int = Field(default=30, ge=3, le=3600)
    o2c_scheduler: bool = True
    # per-job cron overrides, JSON: {"dunning": {"hour": "6", "minute": "0"}}
    o2c_job_schedules: Annotated[dict[str, dict], NoDecode] = Field(default_factory=dict)

    @field_validator("o2c_admins", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("o2c_job_schedules", mode="before")
    @classmethod
    def _parse_schedules(cls, value: object) -> object:
        if isinstance(value, str):
            import json

            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError('must be JSON such as {"dunning": {"minute": "5"}}') from None
        return value

    @field_validator("o2c_hubspot_mapping", mode="before")
    @classmethod
    def _parse_mapping(cls, value: object) -> object:
        if isinstance(value, str):
            import json

            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError('must be JSON such as {"won_stages": ["closedwon"]}') from None
        return value

    @field_validator("o2c_public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
                or parts.fragment:
            raise ValueError("must be the server's public base URL, e.g. https://o2c.example.com")
        return value.rstrip("/")

    @field_validator("o2c_link_secrets", "o2c_pay_link_secrets")
    @classmethod
    def _check_link_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        secrets = [part.strip() for part in value.get_secret_value().split(",")]
        if any(len(secret) < 32 for secret in secrets):
            raise ValueError("each secret must be at least 32 characters "
                             "(e.g. openssl rand -hex 32)")
        return value

    @field_validator("o2c_tracking_urls")
    @classmethod
    def _check_tracking_urls(cls, value: str) -> str:
        from bot.customer_links import parse_tracking_urls

        parse_tracking_urls(value)
        return value

    @field_validator("hubspot_api_url")
    @classmethod
    def _check_hubspot_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://api.hubapi.com")
        return value.rstrip("/")

    @field_validator("o2c_admins")
    @classmethod
    def _check_admins(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not SLACK_USER_ID.match(v)]
        if bad:
            raise ValueError(f"not Slack user IDs: {', '.join(bad)}")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ValueError("must look like smtp://user:pass@host:25")
            smtp_insecure(parts.query)
        return value or None

    @field_validator("o2c_dunning_levels")
    @classmethod
    def _check_levels(cls, value: str) -> str:
        try:
            [int(v) for v in value.split(",")]
        except ValueError:
            raise ValueError("must be comma-separated day offsets such as -3,1,7,14,30") from None
        return value

    @field_validator("o2c_approval_tiers")
    @classmethod
    def _check_tiers(cls, value: str) -> str:
        from workflows.tiers import parse_tiers

        parse_tiers(value)  # ValueError names the bad item
        return value

    @field_validator("o2c_holidays")
    @classmethod
    def _check_holidays(cls, value: str) -> str:
        from workflows.errors import ValidationFailed
        from workflows.workcalendar import Holidays

        try:
            return Holidays.of(value).text
        except ValidationFailed as exc:
            raise ValueError(exc.errors[0].detail) from None

    @field_validator("o2c_late_fees")
    @classmethod
    def _check_late_fees(cls, value: str) -> str:
        from workflows.late_fees import parse_late_fees

        parse_late_fees(value)
        return value

    @field_validator("o2c_home_currency")
    @classmethod
    def _check_home_currency(cls, value: str) -> str:
        from models import money

        try:
            return money.check_currency(value)
        except money.MoneyError as exc:
            raise ValueError(str(exc)) from None

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token and self.slack_app_token.get_secret_value())

    def policy(self) -> Policy:
        """The policy these settings set (admins' overrides come on top, from the database)."""
        return Policy(max_discount_pct=self.o2c_max_discount_pct,
                      overdue_hold_days=self.o2c_overdue_hold_days,
                      approval_reminder_hours=self.o2c_approval_reminder_hours,
                      working_hours=self.o2c_working_hours,
                      business_timezone=self.o2c_business_timezone,
                      holidays=self.o2c_holidays,
                      dunning_levels=self.o2c_dunning_levels,
                      cashapp_confidence=self.o2c_cashapp_confidence,
                      disputes_channel=self.o2c_disputes_channel or "",
                      approval_tiers=self.o2c_approval_tiers,
                      late_fees=self.o2c_late_fees,
                      small_balance_write_off=self.o2c_small_balance_write_off,
                      home_currency=self.o2c_home_currency,
                      dispute_reminder_days=self.o2c_dispute_reminder_days,
                      dispute_escalation_days=self.o2c_dispute_escalation_days,
                      fee_waiver_approval=self.o2c_fee_waiver_approval)

    def require(self, *names: str) -> Settings:
        """Raise SettingsError naming every listed setting that is empty."""
        missing = []
        for name in names:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if not value:
                missing.append(name.upper())
        if missing:
            raise SettingsError("missing setting(s): " + ", ".join(missing))
        return self

    @property
    def oauth_enabled(self) -> bool:
        """OAuth install mode: SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are both set."""
        return bool(self.slack_client_id and self.secret("slack_client_secret"))

    def require_for_serve(self) -> Settings:
        if bool(self.slack_client_id) != bool(self.secret("slack_client_secret")):
            raise SettingsError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go together (OAuth "
                                "install); set both or neither")
        if self.oauth_enabled:
            if self.secret("slack_bot_token"):
                raise SettingsError("set either SLACK_BOT_TOKEN (one workspace) or "
                                    "SLACK_CLIENT_ID/SLACK_CLIENT_SECRET (OAuth install), "
                                    "not both")
            if self.socket_mode:
                raise SettingsError("OAuth install needs HTTP (its redirect URL): unset "
                                    "SLACK_APP_TOKEN or SLACK_CLIENT_ID/SLACK_CLIENT_SECRET")
            self.require("slack_signing_secret", "o2c_api_token")
        else:
            self.require("slack_bot_token", "slack_signing_secret", "o2c_api_token")
        if self.secret("stripe_api_key") and not self.o2c_public_url:
            raise SettingsError("STRIPE_API_KEY needs O2C_PUBLIC_URL (where customers reach "
                                "this server: the Pay now links and Stripe's return pages)")
        if self.stripe_enabled and not self.pay_link_secrets():
            raise SettingsError(PAY_SECRETS_MISSING)
        if self.secret("hubspot_access_token"):
            from bot.hubspot import Mapping

            Mapping.of(self.o2c_hubspot_mapping)  # names an unknown or ill-shaped key
        return self

    def secret(self, name: str) -> str | None:
        """A secret setting's value, or None when it is unset or empty."""
        value = getattr(self, name)
        return value.get_secret_value() or None if value is not None else None

    def pay_link_secrets(self) -> list[str]:
        """The secrets "Pay now" link tokens are derived from, the first for new links
        (O2C_PAY_LINK_SECRETS, else O2C_LINK_SECRETS); empty when neither is set."""
        value = self.secret("o2c_pay_link_secrets") or self.secret("o2c_link_secrets") or ""
        return [part.strip() for part in value.split(",") if part.strip()]

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.secret("stripe_api_key") and self.o2c_public_url)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "?"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid setting(s): " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()

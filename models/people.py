"""Slack users known to the bot and the roles they hold."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from models.base import ts_field


class Role(StrEnum):
    SALES = "sales"  # enters and follows orders
    CREDIT_APPROVER = "credit_approver"  # decides credit approvals
    DISCOUNT_APPROVER = "discount_approver"  # decides discount approvals
    COLLECTOR = "collector"  # works overdue accounts, applies cash
    ADMIN = "admin"  # manages roles and policies; may do everything above


class User(SQLModel, table=True):
    __tablename__ = "users"

    slack_user_id: str = Field(primary_key=True, max_length=32)
    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    timezone: str = Field(default="UTC", max_length=64)
    # their Slack locale (users.info `locale`, e.g. "de-DE"): how amounts, dates and numbers
    # are written for them; None until looked up (then English formats)
    locale: str | None = Field(default=None, max_length=35)
    # the Slack workspace (and Grid org) they were last seen in: where their DMs and App Home
    # are delivered from (OAuth install into several workspaces); None until seen
    team_id: str | None = Field(default=None, max_length=32)
    enterprise_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = ts_field(nullable=False, default_now=True)
    updated_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)


class UserRole(SQLModel, table=True):
    __tablename__ = "user_roles"

    user_id: str = Field(primary_key=True, foreign_key="users.slack_user_id", max_length=32)
    role: str = Field(primary_key=True, max_length=32)
    granted_by: str = Field(default="system", max_length=64)
    granted_at: datetime = ts_field(nullable=False, default_now=True)

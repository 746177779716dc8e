"""Slack-native reach: how the bot answers record numbers mentioned in a channel."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from models.base import big_field, ts_field


class NumberAnswers(StrEnum):
    """How a channel is answered when someone mentions SO-…, INV-… or CN-… in it."""

    EPHEMERAL = "ephemeral"  # only the poster sees the card (the default: nothing leaks)
    THREAD = "thread"  # a reply in the message's thread, for everyone in the channel
    OFF = "off"  # not answered


class ChannelSetting(SQLModel, table=True):
    """Per-channel settings admins choose with `/o2c channel` (absent row: the defaults)."""

    __tablename__ = "channel_settings"

    channel_id: str = Field(primary_key=True, max_length=32)
    number_answers: str = Field(default=NumberAnswers.EPHEMERAL, max_length=16)
    updated_by: str = Field(max_length=32)
    updated_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)


class ChannelWorkspace(SQLModel, table=True):
    """The Slack workspace (and Grid org) a channel the app posts to by its id belongs to,
    recorded when the channel is configured (`/o2c policy set disputes_channel …`, `/o2c
    channel …`: the request's workspace). A post there, from a request or a job, goes out
    with that workspace's installation (`workflows.outbox`); no row: the default one."""

    __tablename__ = "channel_workspaces"

    channel_id: str = Field(primary_key=True, max_length=64)
    team_id: str | None = Field(default=None, max_length=32)
    enterprise_id: str | None = Field(default=None, max_length=32)
    recorded_at: datetime = ts_field(nullable=False, default_now=True, on_update=True)


class CreditRequestStatus(StrEnum):
    PENDING = "pending"  # its approval card waits in the approvals channel
    APPROVED = "approved"
    REJECTED = "rejected"


class CreditRequest(SQLModel, table=True):
    """A credit approval asked for by a Workflow Builder step ("Request credit approval"):
    a customer, an amount in its currency, a reason. Decided once on the usual back-office
    approval card by a credit approver; the decision completes the step
    (`workflows.workflow_steps`). One request per step execution (unique)."""

    __tablename__ = "credit_requests"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    currency: str = Field(max_length=3)
    amount_minor: int = big_field(ge=0)
    reason: str = Field(max_length=2000)
    requested_by: str = Field(max_length=64)
    status: str = Field(default=CreditRequestStatus.PENDING, index=True, max_length=16)
    # the Workflow Builder step execution it completes (functions.completeSuccess)
    function_execution_id: str = Field(unique=True, max_length=64)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = ts_field()
    decision_note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = ts_field(nullable=False, default_now=True)

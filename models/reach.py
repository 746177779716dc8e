"""Slack-native reach: how the bot answers record numbers mentioned in a channel."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from models.base import ts_field


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

"""`Idempotency-Key` for every POST (SPEC §4).

Same key + same body -> the first answer again, nothing changes. Same key + another body ->
409. The key is *reserved* by inserting its row first, inside the request's transaction: a
concurrent duplicate blocks on that row (PostgreSQL) or on the write lock (SQLite) until the
first commits, then replays its answer. A refused request (4xx) stores nothing, its key
included, so the client can fix the body and retry with the same key.

A key is an opaque, case-sensitive string of 1 to `MAX_KEY` printable ASCII characters (the
IETF draft's Structured Field string; Stripe's keys): `abc` and `ABC` are two keys, and the
spaces around a header value are no part of it (the HTTP server strips them). Anything else
is a 422: a header arrives as latin-1, so a UTF-8 "café" would be stored as "cafÃ©" while
other non-ASCII keys would be refused. A key belongs to its route ("POST <path>").

Bodies are compared as the operation reads them: an amount is a number, so "100.0", "100.00"
and "100" are one amount (`request_of` marks each `Amount` field; `body_hash` hashes its
canonical form). A key recorded before amounts were compared so still replays a body sent
exactly as it was then (its hash as sent is accepted too).

A key is kept `O2C_IDEMPOTENCY_RETENTION_HOURS` (30 days by default, at least a day: Stripe
keeps its keys 24 hours) after its request was recorded, then the hourly `idempotency-keys`
job forgets it (`bot.jobs.forget_idempotency_keys`, then `forget`): a retry within that time
replays, one after it is a new request.
Its age is the recording clock's (`created_at`), like the outbox's retries: the sandbox's Time
travel, which moves the business clock, forgets nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import get_args

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.problems import problem
from models import IdempotencyKey
from workflows import audit
from workflows.errors import Conflict, PermissionDenied, ValidationFailed
from workflows.inputs import AMOUNT_PATTERN

log = logging.getLogger("o2c.api")
Operation = Callable[[Session], tuple[int, BaseModel]]  # (status, answer)
MAX_KEY = 255
KEY_PATTERN = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY}}}")  # printable ASCII


SENT_AS_DEFAULT = "__sent_as_default__"


def request_of(model: BaseModel, *, exclude: set[str] | None = None) -> dict:
    """What a request is compared by under its Idempotency-Key: the body as the operation sees
    it (defaults filled in) and, when there are any, the fields *sent* with their default
    value — a field left out and one sent as null differ where a workflow tells them apart
    (`masterdata.upsert_customer`: left out keeps what is stored, null resets it). A body
    with no such field is compared as it always was (a retry across an upgrade replays)."""
    body = _amounts_marked(model, model.model_dump(mode="json", exclude=exclude))
    sent = sorted(_sent_as_default(model, "", exclude or set()))
    return {**body, SENT_AS_DEFAULT: sent} if sent else body


class AmountText(str):
    """An amount as sent ("100.0"), hashed by its value (`canonical`: "100")."""

    @property
    def canonical(self) -> str:
        return format(Decimal(self).normalize(), "f")


def _is_amount(info) -> bool:
    def pattern_of(metadata) -> bool:
        return any(getattr(m, "pattern", None) == AMOUNT_PATTERN for m in metadata)
    return pattern_of(info.metadata) or any(
        pattern_of(getattr(arg, "__metadata__", ())) for arg in get_args(info.annotation))


def _amounts_marked(model: BaseModel, dumped: dict) -> dict:
    """`dumped` (the model's JSON dump) with each amount an `AmountText`, nested models
    included (an order's lines)."""
    fields = type(model).model_fields
    for name, value in dumped.items():
        info, attr = fields.get(name), getattr(model, name, None)
        if info is None:
            continue
        if isinstance(value, str) and _is_amount(info):
            dumped[name] = AmountText(value)
        elif isinstance(attr, BaseModel) and isinstance(value, dict):
            _amounts_marked(attr, value)
        elif isinstance(attr, list | tuple) and isinstance(value, list):
            for item, item_dumped in zip(attr, value, strict=False):
                if isinstance(item, BaseModel) and isinstance(item_dumped, dict):
                    _amounts_marked(item, item_dumped)
    return dumped


def _sent_as_default(model: BaseModel, prefix: str, exclude: set[str]):
    fields = type(model).model_fields
    for name in sorted(model.model_fields_set - exclude):
        value, info = getattr(model, name), fields.get(name)
        if info is not None and not info.is_required() and value == info.get_default(
                call_default_factory=True):
            yield prefix + name
        for n, item in enumerate(value if isinstance(value, list | tuple) else [value]):
            if isinstance(item, BaseModel):
                where = f"{prefix}{name}[{n}]." if isinstance(value, list | tuple) else (
                    f"{prefix}{name}.")
                yield from _sent_as_default(item, where, set())


def body_hash(body: dict, *, as_sent: bool = False) -> str:
    """The body's SHA-256, its amounts by value (`as_sent`: as they were sent, the hash keys
    were recorded with before amounts were compared by value)."""
    canonical = json.dumps(body if as_sent else _by_value(body), sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_value(value):
    if isinstance(value, AmountText):
        return value.canonical
    if isinstance(value, dict):
        return {k: _by_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_by_value(v) for v in value]
    return value


def _replay(row: IdempotencyKey, digests: tuple[str, ...]) -> JSONResponse:
    if row.request_hash not in digests:
        return problem(409, "Idempotency-Key reused",
                       "this Idempotency-Key was already used with a different request body",
                       errors=[{"field": "Idempotency-Key",
                                "detail": "reused with a different body"}],
                       instance=row.scope.partition(" ")[2])  # "POST <path>": the path
    return JSONResponse(row.response_body, status_code=row.response_status,
                        headers={"Idempotent-Replayed": "true"})


class Clash(Conflict):
    """A unique key was taken by a request committed meanwhile: nothing of this one was
    stored, and running it again meets the record the other one made (an upsert updates it
    or finds it as sent)."""


def run(db, *, scope: str, key: str | None, body: dict, operation: Operation,
        on_commit: Callable[[], None] | None = None) -> JSONResponse:
    if key is not None and not KEY_PATTERN.fullmatch(key):
        raise ValidationFailed.of("Idempotency-Key", f"must be 1-{MAX_KEY} printable ASCII "
                                  "characters (e.g. a UUID)")
    digest = body_hash(body)
    digests = (digest, body_hash(body, as_sent=True))  # the second: keys recorded before
    try:
        with db.session() as session:
            row = None
            if key:
                row = session.get(IdempotencyKey, (scope, key))
                if row is not None:
                    return _replay(row, digests)
                row = IdempotencyKey(scope=scope, key=key, request_hash=digest,
                                     response_status=0, response_body={})
                session.add(row)
                session.flush()
            try:
                status, answer = operation(session)
                payload = answer.model_dump(mode="json")
            except BaseException:
                session.rollback()
                raise
            if row is not None:
                row.response_status, row.response_body = status, payload
                session.add(row)
            session.commit()
    except PermissionDenied as refused:
        with db.transaction() as session:
            audit.refusal_of(session, refused)
        raise
    except IntegrityError as exc:
        # A concurrent request with the same key won, or a unique field clashed.
        log.warning("integrity error on %s: %s", scope, exc.orig)
        if key:
            with db.read_session() as session:
                row = session.get(IdempotencyKey, (scope, key))
                if row is not None:
                    return _replay(row, digests)
        raise Clash("the request conflicts with a record created at the same time; "
                    "retry it") from None
    if on_commit is not None:
        on_commit()
    return JSONResponse(payload, status_code=status)


def forget(session: Session, *, before: datetime) -> int:
    """Delete the keys recorded before `before` (the `idempotency-keys` job's cutoff:
    `bot.jobs.forget_idempotency_keys`); how many."""
    return session.execute(delete(IdempotencyKey).where(
        IdempotencyKey.created_at < before)).rowcount

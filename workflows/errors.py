"""Domain errors. Each names the field (or row/column) at fault so every surface — the REST
API's problem details, a CSV import report, a Slack modal — can point at it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. "lines[2].quantity", or "row 4: quantity" for CSV rows
    detail: str


class DomainError(Exception):
    """Base: a request the rules refuse. `status` is the HTTP status the API answers with."""

    status = 422
    title = "Unprocessable request"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class ValidationFailed(DomainError):
    title = "Invalid input"

    @classmethod
    def of(cls, field: str, detail: str) -> ValidationFailed:
        return cls(f"{field}: {detail}", errors=[FieldError(field, detail)])


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class PermissionDenied(DomainError):
    """Refused for lack of a role or by segregation of duties.

    The refusal must be audited even though the transaction that raised it rolls back, so it
    carries what to record; `handlers.common.transaction` and the API write it afterwards in a
    transaction of its own (`workflows.audit.refusal_of`)."""

    status = 403
    title = "Not allowed"

    def __init__(self, detail: str, *, actor: str | None = None, action: str = "action",
                 entity_type: str = "command", entity_id: object = "-") -> None:
        super().__init__(detail)
        self.actor = actor
        self.action = action
        self.entity_type = entity_type
        self.entity_id = entity_id


class InvalidTransition(Conflict):
    title = "Not possible in the current state"


class AlreadyDecided(Conflict):
    """A decision was already taken (double click, retry, or another approver was first)."""

    title = "Already decided"

    def __init__(self, detail: str, *, decided_by: str | None = None,
                 status: str | None = None) -> None:
        super().__init__(detail)
        self.decided_by = decided_by
        self.decision = status


class OverallocationError(Conflict):
    """An allocation would exceed the payment's unapplied amount or the invoice's balance."""

    title = "Over-allocation"


def database_unavailable(error: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached right now" (down, restarting,
    connections dropped, pool exhausted, SQLite file locked or unopenable): the request may
    succeed later, and nothing was changed."""
    import sqlalchemy.exc as sa_exc

    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError,
                              sa_exc.TimeoutError, sa_exc.DisconnectionError))

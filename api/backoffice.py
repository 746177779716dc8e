"""REST API of the back office (SPEC §4, issue 14): disputes and credit notes.

`POST /invoices/{number}/disputes`, `POST /disputes/{id}/resolve`, `POST /credit-notes`,
`GET /credit-notes/{number}` (a CN number, or the id a request got while it waits for
approval), `POST /credit-notes/{number}/applications` (the customer credit it left, applied to
another invoice), `GET /disputes/{id}`. Thin like `api.routes`: parse, one workflow call inside
`idempotency.run` (one transaction; `Idempotency-Key` honoured), serialise. A refusal
(`PermissionDenied`, e.g. a `by` without the role) is a 403 and is audited.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlmodel import select

from api import idempotency, serialize
from api import responses as out
from api.problems import responses as problems
from api.routes import (
    API_ACTOR,
    BODY,
    CREATED,
    IdemKey,
    Key,
    RecordId,
    _deps,
    _post,
    known_query,
    require_token,
)
from models import CreditNote, Customer, Invoice
from workflows import credit_notes, customer_credit, disputes
from workflows.errors import ValidationFailed
from workflows.inputs import CreditApplicationIn, CreditNoteIn, DisputeOpenIn, DisputeResolveIn

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token), Depends(known_query)],
                   responses=problems(401, 422, 503))


def dispute_answer(session, dispute, *,
                   with_history: bool = False) -> out.DisputeOut:
    request = disputes.credit_request_of(session, dispute.id)
    note = (session.exec(select(CreditNote).where(CreditNote.request_id == request.id)).first()
            if request is not None else None)
    return serialize.dispute_out(
        dispute, session.get(Invoice, dispute.invoice_id),
        session.get(Customer, dispute.customer_id), credit_request=request, credit_note=note,
        history=disputes.history(session, dispute.id) if with_history else None)


@router.post("/invoices/{number}/disputes", tags=["back office"], **CREATED,
             response_model=out.DisputeOut, responses=problems(403, 404, 409, *BODY))
def post_dispute(number: Key, body: DisputeOpenIn, request: Request,
                 key: IdemKey = None) -> JSONResponse:
    """Open a dispute on an invoice for its open balance (default) or an amount up to it."""
    deps = _deps(request)

    def op(session):
        dispute = disputes.open_dispute(session, number, body, actor=API_ACTOR,
                                        now=deps.clock.now(), source="api")
        session.flush()
        return 201, dispute_answer(session, dispute)
    return _post(request, key, {"invoice": number, **idempotency.request_of(body)}, op)


@router.post("/disputes/{dispute_id}/resolve", tags=["back office"],
             response_model=out.DisputeOut, responses=problems(403, 404, 409, *BODY))
def resolve_dispute(dispute_id: RecordId, body: DisputeResolveIn, request: Request,
                    key: IdemKey = None) -> JSONResponse:
    """Accept (a credit-note request for up to the disputed amount), reject (a `note` is
    required) or withdraw, by `by` (a Slack user holding the right role), once: resolving a
    resolved dispute is a 409 naming who did."""
    deps = _deps(request)

    def op(session):
        dispute = disputes.resolve(session, dispute_id=dispute_id, outcome=body.outcome,
                                   by=body.by, note=body.note,
                                   credit_amount=body.credit_amount, now=deps.clock.now())
        session.flush()
        return 200, dispute_answer(session, dispute)
    return _post(request, key, {"dispute": dispute_id, **idempotency.request_of(body)}, op)


@router.get("/disputes/{dispute_id}", tags=["back office"], response_model=out.DisputeOut,
            responses=problems(404, 422))
def get_dispute(dispute_id: RecordId, request: Request) -> out.DisputeOut:
    with _deps(request).db.read_session() as session:
        return dispute_answer(session, disputes.get_dispute(session, dispute_id),
                              with_history=True)


@router.post("/credit-notes", tags=["back office"], **CREATED, response_model=out.CreditNoteOut,
             responses={200: {"model": out.CreditNoteOut, "description": "The same "
                              "request under its `external_id` again: the first one"},
                        **problems(403, 404, 409, *BODY)})
def post_credit_note(body: CreditNoteIn, request: Request, key: IdemKey = None) -> JSONResponse:
    """A credit note against one invoice, by `amount` (tax included) or `lines`. It waits for a
    credit approver (answer: `status` pending_approval, no `number` yet; follow it with
    `GET /credit-notes/{id}`), unless `source` is `erp`: an ERP's own credit note is posted as
    issued. The same `external_id` with the same request again returns the first one (200);
    with another invoice, amount, lines, reason, `source`, `requested_by` or `issue_date` it is
    a 409 naming the key and the fields."""
    deps = _deps(request)

    def op(session):
        created_request, created = credit_notes.request_credit_note(
            session, body, actor=API_ACTOR, now=deps.clock.now())
        session.flush()
        view = credit_notes.credit_note_view(session, str(created_request.id))
        return (201 if created else 200), serialize.credit_note_out(view)
    return _post(request, key, idempotency.request_of(body), op)


@router.get("/credit-notes/{number}", tags=["back office"], response_model=out.CreditNoteOut,
            responses=problems(404))
def get_credit_note(number: Key, request: Request) -> out.CreditNoteOut:
    """By CN number, or by the id the request got while it waits for approval."""
    with _deps(request).db.read_session() as session:
        return serialize.credit_note_out(credit_notes.credit_note_view(session, number))


@router.post("/credit-notes/{number}/applications", tags=["back office"], **CREATED,
             response_model=out.CreditApplicationOut,
             responses={200: {"model": out.CreditApplicationOut, "description": "The same key "
                              "again: what was applied under it, nothing more"},
                        **problems(403, 404, 409, *BODY)})
def post_credit_application(number: Key, body: CreditApplicationIn, request: Request,
                            key: IdemKey = None) -> JSONResponse:
    """Apply `amount` of the customer credit the credit note left (on an invoice already paid)
    to another open invoice of the same customer in the same currency, by `by` (a collector
    or credit approver). Never more than the credit its invoice still holds, nor than the
    other invoice's open balance less what a dispute holds (422 naming both). Keyed by
    `external_id`, else the Idempotency-Key (one of them is required): the same key again
    answers what was applied (200), the same key for another application is a 409."""
    deps = _deps(request)
    applied_key = body.external_id or (key or "").strip()
    if not applied_key:
        raise ValidationFailed.of("Idempotency-Key", "send an Idempotency-Key header (or an "
                                  "external_id): a retry without one would apply the credit "
                                  "twice")

    def op(session):
        done = customer_credit.apply_customer_credit(
            session, credit_note=number, invoice=body.invoice, amount=body.amount, by=body.by,
            key=applied_key, now=deps.clock.now())
        return (201 if done.created else 200), serialize.credit_application_out(
            done, session.get(Customer, done.customer_id))
    return _post(request, key, {"credit_note": number, **idempotency.request_of(body)}, op)

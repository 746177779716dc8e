"""The REST API against its own `/openapi.json` (schemathesis): for every operation, requests
that follow the schema and requests that break it, never a server error (SPEC §5.5), and every
answer the one the document describes: a declared status code, its declared content type and
headers, a body that validates against its schema (requests that break the schema refused).

Bounded and repeatable for CI: a fixed number of examples per operation and mode, derandomized
(the same requests on every run), no example database. It runs on whichever database the suite
runs on, so `make test` fuzzes SQLite and PostgreSQL (~15 s each on an idle machine). The
database holds a rep, a customer and a product, so generated orders and payments can reach
them. Raise `O2C_FUZZ_EXAMPLES` for a longer local hunt (and `O2C_FUZZ_RANDOM=1` to draw new
requests)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.db import Database
from bot.server import create_app
from tests.conftest import API_TOKEN, test_settings
from tests.support import factories as f

EXAMPLES = int(os.environ.get("O2C_FUZZ_EXAMPLES", "40"))
DERANDOMIZE = os.environ.get("O2C_FUZZ_RANDOM") != "1"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          negative_data_rejection]  # (for the requests that break the schema)


@pytest.fixture
def schema(database_url: str):
    db = Database(database_url)
    try:
        with db.transaction() as session:
            f.user(session, "USALES01", "sales")
            f.customer(session, "C-GLOBEX", "Globex Corporation")
            f.product(session, "WID-1")
    finally:
        db.dispose()
    app = create_app(test_settings(database_url, "http://127.0.0.1:9/api/"), background=False)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.runtime.listeners.shutdown()
    app.state.deps.db.dispose()


def test_no_request_makes_a_server_error_or_an_undescribed_answer(schema) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13  # every route of api/routes.py is in the schema
    errors: list[str] = []
    answered = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES, derandomize=DERANDOMIZE, deadline=None,
                      database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                nonlocal answered
                response = case.call(headers=AUTH)
                answered += 1
                try:
                    case.validate_response(response, checks=CHECKS, headers=AUTH)
                except FailureGroup as failed:
                    errors.extend(
                        f"{response.status_code} {case.method} {case.formatted_path} "
                        f"query={case.query} body={str(case.body)[:300]}: {failure.title}: "
                        f"{failure.message[:300]}" for failure in failed.exceptions)

            try:
                call()
            except Unsatisfiable:  # no request breaks a path like "anything but NUL"
                assert mode == GenerationMode.NEGATIVE
    assert errors == [], "\n\n".join(errors)
    assert answered >= len(operations) * EXAMPLES  # it really sent them

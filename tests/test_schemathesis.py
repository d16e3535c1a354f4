"""Hostile input: schemathesis generates requests for every operation of /api/schema/, with admin credentials
and without, valid-looking and deliberately malformed (negative) ones, and sequences that follow the
document's links (create, then read, change, enable, delete what was created). No answer may be a 5xx, and
every answer must match the documented schema and statuses."""

from __future__ import annotations

import base64
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .served import Served

ADMIN = "Basic " + base64.b64encode(b"fuzz:fuzz-password-2026").decode()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Bounded and repeatable in CI; FUZZ_EXAMPLES=500 explores further.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=list(HealthCheck),
)
# Generate only: a replay against a service whose state moved on draws other ids, and hypothesis would
# report that as a flaky strategy instead of the failure it found.
SCENARIOS = settings(BOUNDED, max_examples=max(EXAMPLES * 2, 20), stateful_step_count=8, phases=[Phase.generate])


@pytest.fixture(scope="module")
def service(tmp_path_factory, amqp_url):
    # The fuzzer sends generated Basic credentials from one address: throttling them is not under test here.
    served = Served(
        tmp_path_factory.mktemp("fuzz"),
        amqp_url,
        CONSUMERS_START="0",
        CONSUMERS_MIN="0",
        MAX_BODY_BYTES="65536",
        LOGIN_ACCOUNT_LIMIT="1000000",
        LOGIN_ADDRESS_LIMIT="1000000",
        LOGIN_ACCOUNT_TOTAL_LIMIT="1000000",
    )
    try:
        served.start()
        assert served.cli("createsuperuser", "--username", "fuzz", stdin="fuzz-password-2026\n").returncode == 0
        yield served
    finally:
        served.cleanup()


def load_schema(service):
    return schemathesis.openapi.from_url(f"{service.url}/api/schema/")


def operations(service):
    schema = load_schema(service)
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) > 20
    return found


def fuzz(operation, headers: dict, also=None, mode=GenerationMode.POSITIVE, checks=CHECKS) -> None:
    """Up to BOUNDED examples of one operation; the first failed check raises with the request in the message."""

    @BOUNDED
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call_and_validate(headers=headers, checks=checks)
        if also is not None:
            also(case, response)

    run()


def test_every_operation_as_admin(service):
    for operation in operations(service):
        fuzz(operation, {"Authorization": ADMIN})


def test_every_operation_without_credentials(service):
    def refused_unless_public(case, response):
        if case.operation.definition.raw.get("security") != []:
            assert response.status_code == 401, (case.method, case.path, response.status_code)

    for operation in operations(service):
        fuzz(operation, {}, refused_unless_public)


def test_malformed_requests_as_admin(service):
    """Negative data: bodies and query strings that break the schema (wrong types, out of range, missing or
    unknown fields) must be refused with a documented 4xx, never a 5xx."""
    tried = 0
    for operation in operations(service):
        definition = operation.definition.raw
        parameters = definition.get("parameters", [])
        if "requestBody" not in definition and not any(p.get("in") == "query" for p in parameters):
            continue
        fuzz(
            operation,
            {"Authorization": ADMIN},
            mode=GenerationMode.NEGATIVE,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        )
        tried += 1
    assert tried > 10


def test_stateful_sequences_as_admin(service):
    """Create something, then follow the document's links to read, change, enable and delete it."""
    schema = load_schema(service)
    machine = schema.as_state_machine()

    class AsAdmin(machine):
        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": ADMIN}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS)

    assert schema.statistic.transitions.total >= 10
    AsAdmin.run(settings=SCENARIOS)

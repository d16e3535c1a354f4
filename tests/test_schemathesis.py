"""Hostile input: schemathesis generates requests for every operation of /api/schema/, with admin credentials
and without. No answer may be a 5xx, and every answer must match the documented schema and statuses."""

from __future__ import annotations

import base64
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from .served import Served

ADMIN = "Basic " + base64.b64encode(b"fuzz:fuzz-password").decode()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Bounded and repeatable in CI; FUZZ_EXAMPLES=500 explores further.
BOUNDED = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")), deadline=None,
                   derandomize="FUZZ_EXAMPLES" not in os.environ, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def service(tmp_path_factory, amqp_url):
    # The fuzzer sends generated Basic credentials from one address: throttling them is not under test here.
    served = Served(tmp_path_factory.mktemp("fuzz"), amqp_url, CONSUMERS_START="0", CONSUMERS_MIN="0",
                    MAX_BODY_BYTES="65536", LOGIN_ACCOUNT_LIMIT="1000000", LOGIN_ADDRESS_LIMIT="1000000")
    try:
        served.start()
        assert served.cli("createsuperuser", "--username", "fuzz", stdin="fuzz-password\n").returncode == 0
        yield served
    finally:
        served.cleanup()


def operations(service):
    schema = schemathesis.openapi.from_url(f"{service.url}/api/schema/")
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) > 20
    return found


def fuzz(operation, headers: dict, also=None) -> None:
    """Up to BOUNDED examples of one operation; the first failed check raises with the request in the message."""
    @BOUNDED
    @given(case=operation.as_strategy())
    def run(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
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

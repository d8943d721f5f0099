"""schemathesis against the service's OpenAPI document: no 5xx, and every response (status,
content type, headers, body) is what the document says, for every route it lists.

The document is built at collection time from ``create_app`` (it does not depend on a database;
no store is opened for it), and a test checks that the live service serves exactly this document.
"""

from typing import cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.services import Services

pytestmark = pytest.mark.api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

DOCUMENT = create_app(services=cast(Services, object())).openapi()  # no store is opened for the document
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_live_service_serves_this_document(anonymous):
    assert anonymous.get("/api/v1/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_openapi_document(case, service):
    headers = {"Authorization": f"Bearer {service.tokens['admin']}"}
    case.call_and_validate(base_url=service.base_url, headers=headers, checks=CHECKS, timeout=30)

"""The OpenAPI schema is what the service does: schemathesis generates requests from it (valid
and invalid ones, a bounded number per route) and checks every response against it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from xmodal.serve import create_app

pytestmark = [pytest.mark.data, pytest.mark.weights]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


EXAMPLES = 25  # per route and generation mode (valid, then invalid requests)
UNCONSTRAINED = {"GET /health", "GET /items/{item_id}", "GET /thumbnails/{item_id}"}


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_the_service_keeps_its_schema(small_index, mode):
    app = create_app(small_index, allowed_hosts=["*"])  # the Host allow-list has tests of its own
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /search", "POST /search/image", "GET /items/{item_id}"}
    tested = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case):
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # no invalid request exists: no parameters, or any string is an id
            assert mode is GenerationMode.NEGATIVE and operation.label in UNCONSTRAINED, operation.label
            continue
        tested.append(operation.label)
    assert len(tested) >= (2 if mode is GenerationMode.NEGATIVE else 5)

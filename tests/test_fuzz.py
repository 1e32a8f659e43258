"""schemathesis against the service's own /openapi.json: no 5xx, every response as documented.

A bounded number of generated requests per operation, against the real app, Redis and worker.
"""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 25


def test_api_matches_its_document(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    seen: dict[str, Counter] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def check(case):
            response = case.call_and_validate(checks=CHECKS)
            seen.setdefault(case.operation.label, Counter())[response.status_code] += 1

        check()
    print({label: dict(codes) for label, codes in seen.items()})
    assert len(seen) == len(operations)  # every operation was called
    # Generated bodies are rarely four valid numbers: the documented example must be answered.
    predict = next(op for op in operations if op.label == "POST /predict")
    case = predict.Case(body={"features": [5.1, 3.5, 1.4, 0.2]}, media_type="application/json")
    assert case.call_and_validate(checks=CHECKS).status_code == 200

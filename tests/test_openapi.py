"""The OpenAPI document is built from the views and covers the whole contract."""

from __future__ import annotations

import dataclasses

from api import create_app

CONTRACT = {
    ("/health", "get"), ("/readyz", "get"), ("/v1/model", "get"), ("/predict", "post"),
    ("/v1/predict", "post"), ("/v1/jobs", "post"), ("/v1/jobs/{job_id}", "get"),
    ("/v1/jobs/{job_id}/result", "get"), ("/v1/jobs/{job_id}/errors", "get"),
    ("/v1/jobs/{job_id}", "delete"),
}  # fmt: skip


def test_openapi_document_lists_every_endpoint(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    found = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert CONTRACT <= found
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["responses"], f"{method} {path} documents no responses"
    schemas = spec["components"]["schemas"]
    assert {"Job", "Prediction", "Error", "Accepted"} <= set(schemas)


def test_every_documented_ref_resolves(client):
    spec = client.get("/openapi.json").get_json()
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    for ref in refs:
        _, section, kind, name = ref.split("/")
        assert name in spec[section][kind], ref


def test_docs_page(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"openapi.json" in response.data


def test_protected_operations_document_401_and_429(client, settings, worker):
    spec = client.get("/openapi.json").get_json()
    assert set(spec["paths"]["/v1/jobs"]["post"]["responses"]) >= {"401", "429"}
    assert "security" not in spec["paths"]["/v1/jobs"]["post"]  # the API runs open here
    assert "401" not in spec["paths"]["/health"]["get"]["responses"]
    keyed = create_app({"SETTINGS": dataclasses.replace(settings, api_keys="a:K")}).test_client()
    spec = keyed.get("/openapi.json").get_json()
    assert spec["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}, {"bearer": []}]
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"

"""The OpenAPI document is built from the views and covers the whole contract."""

from __future__ import annotations

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

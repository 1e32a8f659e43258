"""The API as an OpenAPI document built from the views' own docstrings, and a page to read it."""

from __future__ import annotations

from apispec import APISpec
from apispec.yaml_utils import load_operations_from_docstring
from flask import Blueprint, current_app, jsonify

from api.auth import PROTECTED
from api.services import services

bp = Blueprint("docs", __name__)

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_NULLABLE_STR = {"type": ["string", "null"]}
_PROBS = {"type": "object", "additionalProperties": {"type": "number"}}
_ROW = {
    "oneOf": [
        {"type": "array", "items": {"type": "number"}},
        {"type": "object", "additionalProperties": {"type": "number"}},
    ]
}
SCHEMAS = {
    "Error": _ERROR,
    "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
    "Ready": {
        "type": "object",
        "required": ["status", "reasons"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "workers": {"type": "integer"},
            "stream_workers": {"type": "integer"},
            "model_versions": {"type": "array", "items": {"type": "string"}},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Manifest": {
        "type": "object",
        "required": ["name", "version", "feature_names", "class_names", "sha256"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "feature_names": {"type": "array", "items": {"type": "string"}},
            "class_names": {"type": "array", "items": {"type": "string"}},
            "sha256": {"type": "string"},
            "created_at": {"type": "string"},
            "estimator": {"type": "string"},
            "metrics": {"type": "object"},
            "library_versions": {"type": "object"},
        },
    },
    "PredictRequest": {
        "type": "object",
        "required": ["features"],
        "properties": {"features": _ROW},
        "example": {"features": [5.1, 3.5, 1.4, 0.2]},
    },
    "InstancesRequest": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "items": _ROW}},
        "example": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
    },
    "Prediction": {
        "type": "object",
        "required": ["prediction", "class_id", "probabilities"],
        "properties": {
            "prediction": {"type": "string"},
            "class_id": {"type": "integer"},
            "probabilities": _PROBS,
            "model_version": {"type": "string"},
        },
    },
    "Predictions": {
        "type": "object",
        "required": ["job_id", "status", "predictions"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string"},
            "predictions": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Prediction"},
                        {"$ref": "#/components/schemas/RowError"},
                    ]
                },
            },
            "model": {"$ref": "#/components/schemas/ModelRef"},
            "error": _NULLABLE_STR,
        },
    },
    "RowError": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "description": "A row the model could not score, and why.",
    },
    "ModelRef": {
        "type": "object",
        "properties": {"name": _NULLABLE_STR, "version": _NULLABLE_STR},
    },
    "Accepted": {
        "type": "object",
        "required": ["job_id", "status", "status_url"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued"]},
            "status_url": {"type": "string"},
        },
    },
    "Job": {
        "type": "object",
        "required": ["job_id", "kind", "status", "progress", "created_at"],
        "properties": {
            "job_id": {"type": "string"},
            "kind": {"type": "string", "enum": ["batch", "predict"]},
            "status": {
                "type": "string",
                "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
            },
            "progress": {
                "type": "object",
                "properties": {
                    "rows_total": {"type": "integer"},
                    "rows_done": {"type": "integer"},
                    "rows_failed": {"type": "integer"},
                },
            },
            "created_at": {"type": "string"},
            "started_at": _NULLABLE_STR,
            "finished_at": _NULLABLE_STR,
            "model": {"$ref": "#/components/schemas/ModelRef"},
            "error": _NULLABLE_STR,
            "result_url": {"type": "string"},
            "errors_url": {"type": "string"},
        },
    },
}


def build_spec() -> dict:
    spec = APISpec(
        title="Queue inference service",
        version="1",
        openapi_version="3.1.0",
        info={"description": "Batch, single and streaming predictions through a Redis queue."},
    )
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    spec.components.response(
        "Error",
        {
            "description": "An error; the message names the field or row at fault.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    )
    keys_on = services().keys is not None
    spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    app = current_app
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        operations = load_operations_from_docstring(view.__doc__ or "")
        if not operations:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        if rule.rule.startswith(PROTECTED):
            for operation in operations.values():
                # Every protected call can be refused for its key or its tenant's rate.
                responses = operation.setdefault("responses", {})
                responses.setdefault(401, {"$ref": "#/components/responses/Error"})
                responses.setdefault(429, {"$ref": "#/components/responses/Error"})
                if keys_on:
                    operation["security"] = [{"apiKey": []}, {"bearer": []}]
        existing = spec.to_dict().get("paths", {}).get(path, {})
        spec.path(path=path, operations={**existing, **operations})
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_spec())


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Queue inference service: API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}
.op{margin:1rem 0;padding:.6rem .8rem;border-left:4px solid #36c;background:#f6f8fb}
.m{font-weight:700;text-transform:uppercase;margin-right:.5rem}
code{background:#eef;padding:0 .2rem}.r{color:#555;font-size:90%}
</style></head><body>
<h1>Queue inference service</h1>
<p>The machine-readable document is at <a href="openapi.json"><code>/openapi.json</code></a>.</p>
<div id="ops">Loading...</div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {
  const out = document.getElementById("ops"); out.textContent = "";
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const d = document.createElement("div"); d.className = "op";
      const h = document.createElement("div");
      h.innerHTML = `<span class="m"></span><code></code> <span></span>`;
      h.children[0].textContent = method; h.children[1].textContent = path;
      h.children[2].textContent = op.summary || "";
      d.appendChild(h);
      if (op.description) {
        const p = document.createElement("p"); p.textContent = op.description; d.appendChild(p);
      }
      const r = document.createElement("div"); r.className = "r";
      r.textContent = "responses: " + Object.keys(op.responses || {}).join(", ");
      d.appendChild(r); out.appendChild(d);
    }
  }
});
</script></body></html>
"""


@bp.get("/docs")
def docs():
    return _PAGE, 200, {"Content-Type": "text/html; charset=utf-8"}

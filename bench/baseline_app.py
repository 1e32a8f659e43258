"""The baseline for single predictions: a minimal synchronous Flask app that scores in-process,
served by gunicorn with the service's own settings (what the original Iris API was, tuned)."""

from __future__ import annotations

import numpy as np
from flask import Flask, jsonify, request

from core import registry
from core.settings import Settings

_settings = Settings.from_env()
_model, _manifest = registry.load(_settings.model_registry, _settings.model_name)
app = Flask(__name__)


@app.get("/health")
def health():
    return jsonify({"status": "ok"})


@app.post("/predict")
def predict():
    features = np.asarray([request.get_json(force=True)["features"]], dtype=np.float64)
    probabilities = _model.predict_proba(features)[0]
    best = int(probabilities.argmax())
    return jsonify(
        {
            "prediction": _manifest.class_names[best],
            "class_id": best,
            "probabilities": dict(
                zip(_manifest.class_names, map(float, probabilities), strict=True)
            ),
            "model_version": _manifest.version,
        }
    )

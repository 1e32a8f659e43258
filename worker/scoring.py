"""Scoring: a feature matrix in, class ids and probabilities out, in one vectorised call."""

from __future__ import annotations

from typing import Any

import numpy as np


def score(model: Any, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class index (into the manifest's class names) and class probabilities for each row."""
    if len(features) == 0:
        return np.empty(0, dtype=np.int64), np.empty((0, len(model.classes_)))
    probabilities = model.predict_proba(features)
    return probabilities.argmax(axis=1), probabilities


def as_json(class_names: list[str], class_ids: np.ndarray, probabilities: np.ndarray) -> list[dict]:
    """One JSON object a row: prediction, class_id, probabilities by class name."""
    return [
        {
            "prediction": class_names[i],
            "class_id": int(i),
            "probabilities": {
                c: round(float(p), 6) for c, p in zip(class_names, probs, strict=True)
            },
        }
        for i, probs in zip(class_ids, probabilities, strict=True)
    ]

"""Scoring: a feature matrix in, class ids and probabilities out, in one vectorised call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sklearn


@dataclass
class Scored:
    class_ids: np.ndarray  # index into the manifest's class names, per row
    probabilities: np.ndarray  # (rows, classes)
    failed: dict[int, str] = field(default_factory=dict)  # row index -> why it has no answer

    def ok(self) -> np.ndarray:
        """Indexes of the rows that were scored."""
        mask = np.ones(len(self.class_ids), dtype=bool)
        mask[list(self.failed)] = False
        return np.flatnonzero(mask)


def score(model: Any, features: np.ndarray) -> Scored:
    """Score every row in one call; a row the model cannot take (finite input that overflows
    inside it, say) is found by scoring the batch row by row, and reported, not raised."""
    rows = len(features)
    if rows == 0:
        return Scored(np.empty(0, dtype=np.int64), np.empty((0, len(model.classes_))))
    failed: dict[int, str] = {}
    try:
        # (Checking the estimators' parameters again costs a fifth of a small batch's call.)
        with sklearn.config_context(skip_parameter_validation=True):
            probabilities = model.predict_proba(features)
    except ValueError:
        probabilities = np.full((rows, len(model.classes_)), np.nan)
        for i in range(rows):
            try:
                probabilities[i] = model.predict_proba(features[i : i + 1])[0]
            except ValueError as exc:
                failed[i] = f"the model cannot score this row: {exc}"
    for i in np.flatnonzero(~np.isfinite(probabilities).all(axis=1)):
        failed.setdefault(int(i), "the model gave no finite probabilities for this row")
    class_ids = np.nan_to_num(probabilities, nan=-1.0).argmax(axis=1)
    return Scored(class_ids, probabilities, failed)


def result_texts(
    class_names: list[str], version: str, class_ids: np.ndarray, probabilities: np.ndarray
) -> list[str]:
    """Each row's answer with its model version, as the JSON text ``json.dumps`` writes for
    ``as_json``'s object plus ``model_version``, without building the objects."""
    names = [json.dumps(name) for name in class_names]
    template = (
        '{"prediction": %s, "class_id": %d, "probabilities": {'
        + ", ".join(f"{name.replace('%', '%%')}: %r" for name in names)
        + '}, "model_version": '
        + json.dumps(version).replace("%", "%%")
        + "}"
    )
    return [
        template % (names[i], i, *[round(p, 6) for p in probs])
        for i, probs in zip(class_ids.tolist(), probabilities.tolist(), strict=True)
    ]


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

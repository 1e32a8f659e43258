"""Input validation: what clients send, as the model's feature matrix, or what is wrong with it."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.errors import PayloadTooLarge, Unprocessable

_UNIT = re.compile(r"\(.*?\)")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize_name(name: str) -> str:
    """'Sepal Length (cm)' -> 'sepal_length': how column and feature names are matched."""
    name = _UNIT.sub("", name.strip().lower())
    return _NON_WORD.sub("_", name).strip("_")


def parse_value(value: Any) -> float | str:
    """A finite float, or a message saying why the value is not one."""
    if isinstance(value, bool):
        return "is a boolean, not a number"
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float (JSON allows them)
            return "is infinite"
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return "is missing"
        try:
            number = float(text)
        except ValueError:
            return f"{_clip(text)!r} is not a number"
    elif value is None:
        return "is missing"
    else:
        return f"is a {type(value).__name__}, not a number"
    if math.isnan(number):
        return "is NaN"
    if math.isinf(number):
        return "is infinite"
    return number


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def parse_row(
    values: Sequence[Any] | dict[str, Any], feature_names: Sequence[str], where: str
) -> list[float]:
    """One instance, as a list in feature order or an object by feature name.

    :raises Unprocessable: naming ``where`` (e.g. ``instances[3]``) and the feature at fault.
    """
    if isinstance(values, dict):
        by_name = {normalize_name(str(k)): v for k, v in values.items()}
        missing = [f for f in feature_names if normalize_name(f) not in by_name]
        if missing:
            raise Unprocessable(f"{where} is missing {', '.join(missing)}", field=where)
        ordered = [by_name[normalize_name(f)] for f in feature_names]
    elif isinstance(values, list | tuple):
        if len(values) != len(feature_names):
            raise Unprocessable(
                f"{where} has {len(values)} values; the model takes {len(feature_names)} "
                f"({', '.join(feature_names)})",
                field=where,
            )
        ordered = list(values)
    else:
        raise Unprocessable(
            f"{where} must be an array of {len(feature_names)} numbers "
            "or an object by feature name",
            field=where,
        )
    row = []
    for name, value in zip(feature_names, ordered, strict=True):
        parsed = parse_value(value)
        if isinstance(parsed, str):
            raise Unprocessable(f"{where}.{name} {parsed}", field=f"{where}.{name}")
        row.append(parsed)
    return row


def parse_instances(instances: Any, feature_names: Sequence[str], limit: int) -> np.ndarray:
    """A JSON ``instances`` list -> an (n, features) float matrix."""
    if not isinstance(instances, list) or not instances:
        raise Unprocessable("instances must be a non-empty array", field="instances")
    if len(instances) > limit:
        raise PayloadTooLarge(
            f"instances has {len(instances)} items; at most {limit} per request", field="instances"
        )
    rows = [parse_row(item, feature_names, f"instances[{i}]") for i, item in enumerate(instances)]
    return np.asarray(rows, dtype=np.float64)

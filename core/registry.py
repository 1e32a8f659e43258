"""The model registry: versions of a model on disk, each a model file and its manifest.

Layout: ``<root>/<name>/<version>/model.joblib`` and ``manifest.json``; ``<root>/<name>/ACTIVE``
names the version the workers serve. A model file is code (joblib is pickle), so it is only
loaded after its sha256 matches the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import ModelError

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
ACTIVE_FILE = "ACTIVE"


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    feature_names: list[str]
    class_names: list[str]
    sha256: str
    created_at: str
    model_file: str = MODEL_FILE
    estimator: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    import joblib
    import numpy
    import sklearn

    return {
        "python": sys.version.split()[0],
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(text)
    os.replace(tmp, path)


def register(
    estimator: Any,
    feature_names: list[str],
    root: str | Path,
    name: str,
    metrics: dict[str, float] | None = None,
    activate: bool = True,
) -> Manifest:
    """Save a fitted classifier as a new version of ``name`` and (by default) make it active."""
    import joblib

    if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
        raise ModelError("the estimator must be a fitted classifier with predict_proba")
    n_in = getattr(estimator, "n_features_in_", len(feature_names))
    if n_in != len(feature_names):
        raise ModelError(f"the estimator takes {n_in} features but {len(feature_names)} are named")
    now = datetime.now(UTC)
    version = now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    folder = Path(root) / name / version
    folder.mkdir(parents=True)
    model_path = folder / MODEL_FILE
    joblib.dump(estimator, model_path)
    manifest = Manifest(
        name=name,
        version=version,
        feature_names=list(feature_names),
        class_names=[str(c) for c in estimator.classes_],
        sha256=sha256_of(model_path),
        created_at=now.isoformat(timespec="seconds"),
        estimator=type(estimator).__name__,
        metrics=dict(metrics or {}),
        library_versions=_library_versions(),
    )
    _write_atomic(folder / MANIFEST_FILE, json.dumps(manifest.to_dict(), indent=2) + "\n")
    if activate:
        _write_atomic(Path(root) / name / ACTIVE_FILE, version + "\n")
    return manifest


def active_version(root: str | Path, name: str) -> str | None:
    path = Path(root) / name / ACTIVE_FILE
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def read_manifest(root: str | Path, name: str, version: str = "") -> Manifest:
    version = version or active_version(root, name) or ""
    if not version:
        raise ModelError(f"no version of model {name!r} is registered under {root}")
    path = Path(root) / name / version / MANIFEST_FILE
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ModelError(f"model {name!r} version {version!r} has no manifest at {path}") from None


def load(root: str | Path, name: str, version: str = "") -> tuple[Any, Manifest]:
    """Load a registered model after checking its bytes against the manifest's sha256."""
    import joblib

    manifest = read_manifest(root, name, version)
    path = Path(root) / name / manifest.version / manifest.model_file
    try:
        actual = sha256_of(path)
    except FileNotFoundError:
        raise ModelError(f"model file {path} is missing") from None
    if actual != manifest.sha256:
        raise ModelError(
            f"model file {path} does not match its manifest (sha256 {actual[:12]}..., "
            f"expected {manifest.sha256[:12]}...): refusing to load it"
        )
    return joblib.load(path), manifest

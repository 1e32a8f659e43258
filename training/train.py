"""Train the Iris classifier on scikit-learn's bundled data and register it as a new version."""

from __future__ import annotations

import argparse

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core import registry
from core.settings import Settings

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def train_iris(seed: int = 42):
    """Fit on a stratified 80% split; return the model and its metrics on the held-out 20%."""
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=seed, stratify=data.target
    )
    names = data.target_names
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    # Fit on class names, so the model itself answers "setosa" rather than 0.
    model.fit(x_train, names[y_train])
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": round(float(accuracy_score(names[y_test], predicted)), 4),
        "f1_macro": round(float(f1_score(names[y_test], predicted, average="macro")), 4),
        "test_rows": int(len(y_test)),
        "train_rows": int(len(y_train)),
    }
    return model, metrics


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", default=settings.model_registry)
    parser.add_argument("--name", default=settings.model_name)
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a version is already active"
    )
    args = parser.parse_args(argv)
    if args.if_missing and registry.active_version(args.registry, args.name):
        print(f"model {args.name!r} already registered under {args.registry}")
        return
    model, metrics = train_iris()
    manifest = registry.register(model, FEATURES, args.registry, args.name, metrics)
    print(
        f"registered {manifest.name} {manifest.version} in {args.registry}: "
        f"accuracy {metrics['accuracy']}, f1_macro {metrics['f1_macro']} "
        f"on {metrics['test_rows']} held-out rows"
    )


if __name__ == "__main__":
    main()

"""The worker: one model load per process however many tasks, and a refused tampered model."""

from __future__ import annotations

import dataclasses
import signal
import time

from api import create_app
from core import registry
from core.workers import Presence
from tests import procs
from training.train import FEATURES, train_iris


def test_each_worker_process_loads_its_model_once(client, settings, worker, redis_client):
    presence = Presence(redis_client, settings)
    before = sum(b.tasks for b in presence.live())
    for i in range(30):
        row = [5.0 + i / 10, 3.0, 1.5 + i / 10, 0.3]
        assert client.post("/v1/predict?wait=10", json={"instances": [row]}).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        beats = [b for b in presence.live() if b.model_version]
        if sum(b.tasks for b in beats) >= before + 30 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(beats) == 2  # two prefork processes
    assert sum(b.tasks for b in beats) >= before + 30
    assert [b.model_loads for b in beats] == [1, 1]


def test_a_model_that_does_not_match_its_manifest_is_refused(tmp_path, settings):
    model, metrics = train_iris()
    manifest = registry.register(model, FEATURES, tmp_path, "iris", metrics)
    model_file = tmp_path / "iris" / manifest.version / registry.MODEL_FILE
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    mine = dataclasses.replace(
        settings, model_registry=str(tmp_path), key_prefix=settings.key_prefix + "x"
    )
    proc = procs.spawn(procs.local(procs.COMMANDS["worker"]) + ["--concurrency", "1"], mine)
    try:
        client = create_app({"SETTINGS": mine}).test_client()
        deadline = time.monotonic() + 30
        while True:
            body = client.get("/readyz").get_json()
            if any("does not match" in r for r in body["reasons"]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert body["status"] == "unavailable"
        assert any("does not match its manifest" in r for r in body["reasons"]), body
        assert client.get("/readyz").status_code == 503
    finally:
        procs.stop(proc)


def test_registering_another_classifier(tmp_path):
    from sklearn.datasets import load_wine
    from sklearn.tree import DecisionTreeClassifier

    data = load_wine()
    names = [n.replace("/", "_") for n in data.feature_names]
    clf = DecisionTreeClassifier(max_depth=3, random_state=0).fit(data.data, data.target)
    manifest = registry.register(clf, names, tmp_path, "wine", {"accuracy": 1.0})
    loaded, same = registry.load(tmp_path, "wine")
    assert same == manifest
    assert same.feature_names == names and same.class_names == ["0", "1", "2"]
    assert same.library_versions["scikit-learn"]
    assert (loaded.predict(data.data[:5]) == clf.predict(data.data[:5])).all()
    assert registry.active_version(tmp_path, "wine") == manifest.version


def test_readyz_fails_once_no_worker_has_beaten_its_heartbeat(settings):
    mine = dataclasses.replace(settings, key_prefix=settings.key_prefix + "hb",
                               heartbeat_ttl_seconds=2.0)  # fmt: skip
    proc = procs.start_worker(mine, concurrency=1)
    client = create_app({"SETTINGS": mine}).test_client()
    assert client.get("/readyz").status_code == 200
    procs.stop(proc, signal.SIGKILL)  # no goodbye: only the silence tells
    deadline = time.monotonic() + 15
    while client.get("/readyz").status_code == 200:
        assert time.monotonic() < deadline, "still ready with no worker alive"
        time.sleep(0.2)
    body = client.get("/readyz").get_json()
    assert body["reasons"] == ["no worker has the model loaded"] and body["workers"] == 0

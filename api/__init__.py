"""The HTTP front end: a Flask app factory. It validates, records jobs, enqueues; never scores."""

from __future__ import annotations

from typing import Any

from flask import Flask

from api import auth, docs, errors, events, health, jobs, observe, predict
from api.services import Services
from core.settings import Settings


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``test_config`` may carry ``SETTINGS`` (a Settings) and Flask options."""
    app = Flask(__name__)
    test_config = dict(test_config or {})
    settings: Settings = test_config.pop("SETTINGS", None) or Settings.from_env()
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        JSON_SORT_KEYS=False,
        DEBUG=False,
        PROPAGATE_EXCEPTIONS=False,
    )
    app.config.update(test_config)
    app.extensions["inference"] = Services.build(settings)
    errors.init_app(app)
    observe.init_app(app)
    auth.init_app(app)
    for module in (health, predict, jobs, events, docs, observe):
        app.register_blueprint(module.bp)
    return app

"""gunicorn settings, taken from the same environment variables as everything else."""

from core.settings import Settings

_settings = Settings.from_env()
bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "gthread"
threads = _settings.api_threads
# Waits for a prediction (?wait=, /predict) hold a thread; keep the worker alive through them.
timeout = int(max(_settings.max_wait_seconds, _settings.predict_timeout_seconds)) + 30
graceful_timeout = 10
accesslog = "-"

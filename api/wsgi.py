"""What gunicorn serves: ``gunicorn -c api/gunicorn_conf.py api.wsgi:app``."""

from api import create_app
from core import logs
from core.settings import Settings

logs.configure("api", Settings.from_env().log_format)
app = create_app()

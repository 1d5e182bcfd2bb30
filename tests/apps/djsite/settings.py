"""Settings from the environment.

``DJSITE_DB``: ``sqlite`` (default; file ``DJSITE_SQLITE_PATH``) or ``postgres`` (on
127.0.0.1, port ``DJSITE_PG_PORT``, user and database ``postgres``, trust auth).
``DJSITE_SLOW_URL``: base URL of the slow outbound HTTP service the view calls.
"""
import os

SECRET_KEY = "framework-tests-only"
DEBUG = False
# Errors reach the WSGI server (and its error log) instead of a bare 500 page.
DEBUG_PROPAGATE_EXCEPTIONS = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djsite.urls"
INSTALLED_APPS = ["djsite"]
MIDDLEWARE = []
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
}]

if os.environ.get("DJSITE_DB", "sqlite") == "postgres":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": os.environ["DJSITE_PG_PORT"],
        "NAME": "postgres",
        "USER": "postgres",
    }}
else:
    # SQLite runs in C in the calling thread, so each commit's fsync holds up every green
    # thread; WAL with synchronous=NORMAL syncs at checkpoints instead of at every commit.
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DJSITE_SQLITE_PATH"],
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
    }}

SLOW_URL = os.environ.get("DJSITE_SLOW_URL", "")

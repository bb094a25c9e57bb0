"""Settings for the shop example: a small Django project served with eagerstep.

Only what the example needs. SHOP_* values can come from the environment so the tests (and you) can
point the project at another SQLite file or shorten the follow-up delay.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "eagerstep.integrations.django",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # request.eagerstep, and (DEFER_EVENTS) events held until the transaction commits.
    "eagerstep.integrations.django.middleware.EagerStepMiddleware",
]

ROOT_URLCONF = "shop_project.urls"
WSGI_APPLICATION = "shop_project.wsgi.application"
ASGI_APPLICATION = "shop_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", BASE_DIR / "db.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

# --- eagerstep -------------------------------------------------------------------------------
# The settings bridge: every key here wins over the matching INNGEST_* environment variable
# (DEV <- INNGEST_DEV, SIGNING_KEY <- INNGEST_SIGNING_KEY, EVENT_KEY <- INNGEST_EVENT_KEY, ...).
# Keys left out come from the environment: run `INNGEST_DEV=1 manage.py runserver` against
# `eagerstep dev`, and set INNGEST_SIGNING_KEY / INNGEST_EVENT_KEY in production.
EAGERSTEP = {
    "APP_ID": "django-shop",
    # Functions are discovered from each installed app's `durable.py` (the default DURABLE_MODULE).
    # Events sent during a request leave only if the response succeeds, and those sent inside
    # transaction.atomic() only once it commits: a rolled-back order triggers nothing.
    "DEFER_EVENTS": True,
    # Checkpointing is on by default; these are its knobs.
    "CHECKPOINTING": {"buffered_steps": 1, "max_runtime": 10},
}

# --- the shop --------------------------------------------------------------------------------
# How long process-order sleeps before the follow-up mail (a duration such as "30s", "10m", "2d").
SHOP_FOLLOW_UP_DELAY = os.environ.get("SHOP_FOLLOW_UP_DELAY", "10m")
# The simulated payment gateway times out on each order's first charge, to show a retried step.
SHOP_GATEWAY_FAILS_FIRST_CHARGE = os.environ.get("SHOP_GATEWAY_FAILS_FIRST_CHARGE", "1") == "1"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "eagerstep": {"handlers": ["console"], "level": "INFO"},
        "shop": {"handlers": ["console"], "level": "INFO"},
    },
}

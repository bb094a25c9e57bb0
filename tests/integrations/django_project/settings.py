"""Settings of the Django project the tests serve eagerstep from (conformance and Django tests)."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "eagerstep-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.integrations.django_project.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "eagerstep.integrations.django",
    "tests.integrations.django_project.testapp",
    "tests.integrations.django_project.otherapp",
]
MIDDLEWARE = ["eagerstep.integrations.django.middleware.EagerStepMiddleware"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.mkdtemp(prefix="eagerstep-django-"), "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# The conformance suite's client and functions; tests switch keys with override_settings.
EAGERSTEP = {
    "CLIENT": "tests.http.functions.client",
    "FUNCTIONS": ["tests.http.functions"],
    "DEV": True,
}

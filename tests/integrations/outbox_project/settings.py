"""A Django project for the outbox crash test: the outbox on, a SQLite file from OUTBOX_TEST_DB,
the event API from INNGEST_DEV (the test's engine)."""

import os

SECRET_KEY = "eagerstep-outbox-tests"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "eagerstep.integrations.django"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["OUTBOX_TEST_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
EAGERSTEP = {"APP_ID": "outbox-crash", "FUNCTIONS": [], "OUTBOX": True}

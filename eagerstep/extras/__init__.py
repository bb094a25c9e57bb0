"""Middleware built on :mod:`eagerstep.core.middleware`, each behind an optional extra:
``otel`` (OpenTelemetry), ``sentry`` (Sentry), ``encryption`` (end-to-end encryption)."""

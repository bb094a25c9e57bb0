"""The Django app: ``INSTALLED_APPS += ["eagerstep.integrations.django"]``."""

from django.apps import AppConfig


class EagerStepConfig(AppConfig):
    name = "eagerstep.integrations.django"
    label = "eagerstep"
    verbose_name = "eagerstep"

    def ready(self) -> None:
        # Registers checks and the setting_changed receiver, and flush-at-exit hooks. Nothing here
        # starts a thread or opens a connection: senders start with the first call request, in the
        # process that serves it (never in `migrate` or the autoreloader's parent).
        from eagerstep.integrations import _common
        from eagerstep.integrations.django import checks, conf, handler  # noqa: F401

        _common.install_shutdown_hooks()

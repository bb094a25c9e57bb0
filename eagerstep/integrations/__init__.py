"""Framework adapters: ``django`` (an installable app), ``flask`` (a blueprint and extension), ``fastapi``."""

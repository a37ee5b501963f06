from __future__ import annotations

from django.apps import AppConfig


class PluginsAppConfig(AppConfig):
    name = "plugins_app"
    verbose_name = "Plugins"

    def ready(self) -> None:
        from plugins_app import checks  # noqa: F401  (registers the system checks)

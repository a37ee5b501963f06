"""System checks for plugin configuration. Ids are stable: plugins_app.E001 …"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_plugins_folder(app_configs=None, **kwargs) -> list[Error]:
    folder = settings.PLUGINS_FOLDER
    if not folder.exists():
        return [
            Error(
                f"PLUGINS_FOLDER {str(folder)!r} does not exist.",
                hint="Create it, or point PLUGINS_FOLDER at the folder holding your plugin files.",
                id="plugins_app.E001",
            )
        ]
    if not folder.is_dir():
        return [
            Error(
                f"PLUGINS_FOLDER {str(folder)!r} is not a folder.",
                hint="PLUGINS_FOLDER must name a directory.",
                id="plugins_app.E002",
            )
        ]
    return []

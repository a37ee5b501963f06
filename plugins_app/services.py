"""Plugin workflows with side effects: discovery, activation, rollback.

Activation and rollback are superuser-only — a plugin is code that every worker will run — and
each one that changes something is written to the admin log (`LogEntry`), whoever calls it
(the admin, the API, a management command).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from plugins_app.discovery import DiscoveryResult, discover
from plugins_app.models import Plugin, PluginVersion


def plugins_discover(*, force: bool = False) -> DiscoveryResult:
    """Scan `PLUGINS_FOLDER` and reconcile the plugin rows; returns what changed.

    Costs one read and hash of every plugin file plus an `ast.parse` of the new or changed
    ones (all of them with `force`), and a few bulk queries in one transaction.
    """
    return discover(
        Path(settings.PLUGINS_FOLDER), auto_activate=settings.PLUGINS_AUTO_ACTIVATE, force=force
    )


def _require_superuser(user) -> None:
    if not (user and user.is_active and user.is_superuser):
        raise PermissionDenied("Only a superuser may change which plugin code runs.")


def _audit(*, user, plugin: Plugin, message: str) -> None:
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[plugin], action_flag=CHANGE, change_message=message
    )


def plugin_activate(*, plugin: Plugin, user) -> bool:
    """Make `plugin` runnable. Returns False when it already was active (nothing written).

    Raises PermissionDenied for a non-superuser, ValidationError for a plugin whose file is
    missing or broken (activating it would change nothing a user can run).
    """
    _require_superuser(user)
    if plugin.is_missing:
        raise ValidationError(f"{plugin.pk}: its file is missing; it cannot be activated.")
    if plugin.discovery_error:
        raise ValidationError(f"{plugin.pk}: fix its error first ({plugin.discovery_error}).")
    # Compare-and-set, so two admins clicking at once write one log entry.
    with transaction.atomic():
        if not Plugin.objects.filter(pk=plugin.pk, is_active=False).update(is_active=True):
            return False
        _audit(user=user, plugin=plugin, message="Activated")
    plugin.is_active = True
    return True


def plugin_deactivate(*, plugin: Plugin, user) -> bool:
    """Stop new runs of `plugin`. Returns False when it already was inactive."""
    _require_superuser(user)
    with transaction.atomic():
        if not Plugin.objects.filter(pk=plugin.pk, is_active=True).update(is_active=False):
            return False
        _audit(user=user, plugin=plugin, message="Deactivated")
    plugin.is_active = False
    return True


def plugin_file_path(plugin: Plugin) -> Path:
    """The absolute path of the plugin's file, refusing any path outside PLUGINS_FOLDER."""
    folder = Path(settings.PLUGINS_FOLDER).resolve()
    path = (folder / plugin.file_path).resolve()
    if folder not in path.parents:
        raise ValidationError(f"{plugin.pk}: file path {plugin.file_path!r} is outside the folder.")
    return path


def plugin_rollback(*, version: PluginVersion, user) -> Plugin:
    """Write `version`'s source back to its plugin's file and rediscover; returns the plugin.

    The plugin keeps its active flag; its sha256 becomes the version's, so workers run exactly
    that code. No new PluginVersion is created (the hash is already known). Raises
    PermissionDenied for a non-superuser and ValidationError when it is already the current
    version; the file is not touched in either case.
    """
    _require_superuser(user)
    plugin = Plugin.objects.get(pk=version.plugin_id)  # fresh: the caller's copy may be stale
    if plugin.sha256 == version.sha256 and not plugin.is_missing:
        raise ValidationError(f"{plugin.pk}: that version is already the current one.")
    path = plugin_file_path(plugin)
    _write_atomically(path, version.source.encode("utf-8"))
    plugins_discover()
    plugin.refresh_from_db()
    label = version.version or "?"
    _audit(user=user, plugin=plugin, message=f"Rolled back to {label} ({version.sha256[:12]})")
    return plugin


def _write_atomically(path: Path, data: bytes) -> None:
    # A watcher or a worker must never read a half-written plugin file.
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    # The dot prefix and .tmp suffix keep discovery from ever reading the temporary file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".rollback-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)  # mkstemp makes it 0600; workers may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Registered plugins and every distinct version of their files.

A plugin row is created and updated by discovery (`plugins_app/discovery.py`), never by hand:
its metadata is what parsing the file found. A file that vanished is marked missing, never
deleted, so its task history keeps pointing at it.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

PLUGIN_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
plugin_id_validator = RegexValidator(
    PLUGIN_ID_PATTERN, "Plugin ids are lowercase letters, digits and single hyphens."
)


class Plugin(models.Model):
    id = models.CharField(primary_key=True, max_length=100, validators=[plugin_id_validator])
    name = models.CharField(max_length=200)
    summary = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    version = models.CharField(max_length=50, blank=True)
    author = models.CharField(max_length=200, blank=True)

    file_path = models.CharField(max_length=1000, help_text="Relative to PLUGINS_FOLDER.")
    sha256 = models.CharField(max_length=64, blank=True)
    md5 = models.CharField(max_length=32, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    mtime = models.DateTimeField(null=True, blank=True)

    functions = models.JSONField(default=list, blank=True)
    params_schema = models.JSONField(default=dict, blank=True)
    takes_context = models.BooleanField(default=False)
    timeout = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds, from the file's TIMEOUT; empty = setting default.",
    )

    is_active = models.BooleanField(default=False)
    is_missing = models.BooleanField(default=False, help_text="The file is no longer on disk.")
    discovery_error = models.TextField(blank=True)
    install_count = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        permissions = [("run_plugin", "Can run plugins")]
        indexes = [models.Index(fields=["is_active", "id"], name="plugin_active_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id__regex=PLUGIN_ID_PATTERN), name="plugin_id_format"
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def has_error(self) -> bool:
        return bool(self.discovery_error)

    @property
    def is_runnable(self) -> bool:
        return self.is_active and not self.is_missing and not self.discovery_error


class PluginVersion(models.Model):
    """One distinct content hash of a plugin's file, with the source as it was."""

    plugin = models.ForeignKey(Plugin, on_delete=models.CASCADE, related_name="versions")
    sha256 = models.CharField(max_length=64)
    md5 = models.CharField(max_length=32)
    version = models.CharField(max_length=50, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    source = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plugin", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["plugin", "sha256"], name="pluginversion_unique_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.plugin_id} {self.version or '?'} ({self.sha256[:12]})"

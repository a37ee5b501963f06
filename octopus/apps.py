from __future__ import annotations

from django.apps import AppConfig


class OctopusConfig(AppConfig):
    """Project-wide commands (ensure_admin) and templates; no models."""

    name = "octopus"
    verbose_name = "Octopus"

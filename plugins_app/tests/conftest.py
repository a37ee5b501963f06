from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def plugins_folder(tmp_path, settings) -> Path:
    """An empty PLUGINS_FOLDER of this test's own."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    settings.PLUGINS_FOLDER = folder
    settings.PLUGINS_AUTO_ACTIVATE = False
    return folder


@pytest.fixture
def write_plugin(plugins_folder):
    """write_plugin("sub/name.py", source) → the path; the source is dedented."""

    def write(rel_path: str, source: str) -> Path:
        path = plugins_folder / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
        return path

    return write

"""`.env.example` lists every variable the project reads."""

from __future__ import annotations

import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
READ_PATTERNS = [
    r"""env\.(?:str|int|bool|list)\(\s*["']([A-Z][A-Z0-9_]+)["']""",
    r"""_(?:bool|int)\(\s*["']([A-Z][A-Z0-9_]+)["']""",
    r"""env\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""",
    r"""environ\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""",
]
NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE", "CI"}


def variables_read() -> set[str]:
    found: set[str] = set()
    for path in [*BASE_DIR.glob("octopus/*.py"), *BASE_DIR.glob("*_app/**/*.py")]:
        if "tests" in path.parts:
            continue
        text = path.read_text()
        for pattern in READ_PATTERNS:
            found.update(re.findall(pattern, text))
    return found - NOT_CONFIGURATION


def test_every_variable_read_is_listed_in_env_example():
    listed = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M)
    )
    read = variables_read()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PLUGINS_FOLDER"} <= read
    assert read - listed == set()

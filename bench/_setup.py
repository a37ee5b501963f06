"""Shared set-up for the benches: a throwaway database, Django, and a temporary plugins folder.

    bench_django("postgres")  # creates octopus_bench_<pid> on the machine's PostgreSQL
    bench_django("sqlite")    # a temp SQLite file

Both run `migrate` and are removed again by `teardown()`. Redis comes from `REDIS_URL`
(default redis://127.0.0.1:6379/4, the bench's own database number).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


class BenchDatabase:
    def __init__(self, kind: str):
        self.kind = kind
        self.tmp = Path(tempfile.mkdtemp(prefix="octopus-bench-"))
        self.pg_name = f"octopus_bench_{os.getpid()}"
        if kind == "postgres":
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}"')
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.pg_name
        elif kind == "sqlite":
            self.url = f"sqlite:///{self.tmp / 'bench.sqlite3'}"
        else:
            raise SystemExit(f"unknown database kind {kind!r}: use postgres or sqlite")
        self.plugins = self.tmp / "plugins"
        self.plugins.mkdir()

    def teardown(self) -> None:
        from django.db import connections

        connections.close_all()
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)


def bench_django(kind: str) -> BenchDatabase:
    """Create the throwaway database, configure and set up Django against it, migrate."""
    db = BenchDatabase(kind)
    os.environ["DATABASE_URL"] = db.url
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/4")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
    os.environ["DEBUG"] = "false"  # DEBUG would keep every query in memory
    os.environ["PLUGINS_FOLDER"] = str(db.plugins)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return db


def register_plugin(db: BenchDatabase, plugin_id: str, source: str, **fields):
    """Write a plugin file and its Plugin row (active, hashed), as discovery would."""
    from plugins_app.models import Plugin

    data = source.encode()
    name = plugin_id.replace("-", "_") + ".py"
    (db.plugins / name).write_bytes(data)
    plugin, _ = Plugin.objects.update_or_create(
        id=plugin_id,
        defaults={
            "name": plugin_id, "file_path": name, "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data).hexdigest(), "is_active": True,
            "params_schema": {"type": "object"}, "takes_context": "def run(context" in source,
            **fields,
        },
    )  # fmt: skip
    return plugin


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def p50_p95_max(samples: list[float]) -> tuple[float, float, float]:
    """Median, 95th percentile (nearest rank, as `percentile`) and worst of `samples`."""
    return statistics.median(samples), percentile(samples, 95), max(samples)


def pg_urls(url: str, name: str) -> tuple[str, str]:
    """For a postgres:// URL: the server's maintenance database URL (to create and drop
    databases from) and the URL of database `name` on the same server."""
    parts = urlsplit(url)
    return (
        urlunsplit(parts._replace(path="/postgres")),
        urlunsplit(parts._replace(path="/" + name)),
    )


def pg_recreate(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    """Drop database `name` (disconnecting its users) and, unless `drop_only`, create it anew."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def pg_drop_after_django(admin_url: str, name: str) -> None:
    """Close Django's connections (if Django got that far) and drop database `name`."""
    try:
        from django.db import connections

        connections.close_all()
    except Exception:
        pass
    pg_recreate(admin_url, name, drop_only=True)

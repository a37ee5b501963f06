"""How long discovery takes for 1,000 plugin files: `python -m bench.discovery [--files N]`.

Generates N realistic plugin files (docstring, metadata, a typed `run` with an `Args:` section,
spread over subfolders) in a temporary folder, then times, best of --rounds:

* baseline `read+hash`: reading every file and computing sha256 + md5 (what any change
  detection must do), and `read+parse`: the same plus `ast.parse` (the floor for extracting
  metadata without importing);
* `full`: a discovery into empty tables (every file parsed, every row and version inserted);
* `no change`: a second discovery over the same files (read + hash + one query);
* `one changed`: one file edited among N.

The database is a throwaway: a fresh SQLite file by default, or — when DATABASE_URL names a
PostgreSQL server — a new database `octopus_bench_<pid>` on that server, dropped at the end.
The dev database is never touched.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TARGET_SECONDS = 3.0

TEMPLATE = '''"""Plugin number {n}: archive and report on dataset {n}.

This plugin exists to measure discovery. It has a realistic size: a module docstring,
metadata, a helper or two and a typed run() with an Args: section.
"""

from __future__ import annotations

from typing import Literal

__version__ = "1.{n}.0"
__author__ = "Bench team {team}"
TIMEOUT = 5 * 60


def _helper(value: str) -> str:
    """Normalise a value."""
    return value.strip().lower()


def run(
    context,
    source: str,
    keep: int = 5,
    ratio: float = 0.5,
    dry_run: bool = False,
    mode: Literal["fast", "best"] = "fast",
    tags: list[str] | None = None,
    options: dict[str, int] | None = None,
) -> dict:
    """Do the work for dataset {n}.

    Args:
        source: directory to archive.
        keep: how many archives to keep.
        ratio: the share of files to sample.
        dry_run: only report what would happen.
        mode: compression effort.
        tags: labels for the archive.
        options: extra integer settings.
    """
    context.log.info("working on %s", source)
    for step in range(keep):
        if context.cancelled:
            break
        context.progress(step, total=keep)
    return {{"source": _helper(source), "n": {n}}}
'''


def _setup_django(database_url: str | None) -> Callable[[], None]:
    """Point Django at a throwaway database, migrate it; returns a cleanup function."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "octopus.settings"
    if not os.environ.get("SECRET_KEY"):
        os.environ["DEBUG"] = "1"
    os.environ["LOG_LEVEL"] = "WARNING"
    cleanup: Callable[[], None]
    if database_url and database_url.startswith(("postgres://", "postgresql://")):
        url, cleanup = _throwaway_postgres(database_url)
    else:
        handle = tempfile.NamedTemporaryFile(prefix="octopus-bench-", suffix=".sqlite3")  # noqa: SIM115
        url = f"sqlite:///{handle.name}"
        cleanup = handle.close
    os.environ["DATABASE_URL"] = url

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return cleanup


def _throwaway_postgres(database_url: str) -> tuple[str, Callable[[], None]]:
    import psycopg

    base, _, _ = database_url.rpartition("/")
    name = f"octopus_bench_{os.getpid()}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

    return f"{base}/{name}", drop


def _generate(folder: Path, count: int) -> list[Path]:
    paths = []
    for n in range(count):
        sub = folder / f"team_{n % 10}"
        sub.mkdir(exist_ok=True)
        path = sub / f"plugin_{n:05d}.py"
        path.write_text(TEMPLATE.format(n=n, team=n % 10))
        paths.append(path)
    return paths


_cpu: dict[str, list[float]] = {}


def _timed(fn: Callable[[], object], key: str) -> float:
    """Wall seconds of fn(); its CPU seconds in this process go to _cpu[key]. On a shared
    machine the CPU figure moves less than the wall one (the database server's own work is
    in wall time only)."""
    started, cpu = time.perf_counter(), time.process_time()
    fn()
    _cpu.setdefault(key, []).append(time.process_time() - cpu)
    return time.perf_counter() - started


def _read_hash(paths: list[Path]) -> None:
    for path in paths:
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_parse(paths: list[Path]) -> None:
    for path in paths:
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        ast.parse(data)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    cleanup = _setup_django(os.environ.get("DATABASE_URL"))
    try:
        return _run(args.files, args.rounds)
    finally:
        cleanup()


def _run(count: int, rounds: int) -> int:
    from django.db import connection

    from plugins_app.discovery import discover
    from plugins_app.models import Plugin, PluginVersion

    with tempfile.TemporaryDirectory(prefix="octopus-bench-plugins-") as tmp:
        folder = Path(tmp)
        paths = _generate(folder, count)
        figures: dict[str, list[float]] = {k: [] for k in ("read+hash", "read+parse", "full",
                                                           "no change", "one changed")}  # fmt: skip
        for round_ in range(rounds):
            PluginVersion.objects.all().delete()
            Plugin.objects.all().delete()
            figures["read+hash"].append(_timed(lambda: _read_hash(paths), "read+hash"))
            figures["read+parse"].append(_timed(lambda: _read_parse(paths), "read+parse"))
            result = None

            def full() -> None:
                nonlocal result
                result = discover(folder)

            figures["full"].append(_timed(full, "full"))
            assert len(result.added) == count and not result.errors, result.summary()
            figures["no change"].append(_timed(lambda: discover(folder), "no change"))
            paths[0].write_text(paths[0].read_text() + f"\n# edit {round_}\n")
            figures["one changed"].append(_timed(lambda: discover(folder), "one changed"))
        assert Plugin.objects.count() == count
        assert PluginVersion.objects.count() == count + 1

    best = {k: min(v) for k, v in figures.items()}
    median = {k: statistics.median(v) for k, v in figures.items()}
    print(f"discovery of {count} plugin files, {connection.vendor}, best/median of {rounds}")
    for key in figures:
        ratio = best[key] / best["read+hash"]
        cpu = min(_cpu[key])
        print(
            f"  {key:<12} {best[key]:7.3f} s  (median {median[key]:.3f} s, cpu {cpu:.3f} s)"
            f"  {ratio:5.1f}× read+hash"
        )
    verdict = "OK" if best["full"] < TARGET_SECONDS else "TOO SLOW"
    print(f"  target: full discovery < {TARGET_SECONDS:.0f} s → {verdict}")
    print(f"  load average after the run: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

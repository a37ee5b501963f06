"""Server-side render time of the pages at scale: `python -m bench.pages`.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octopus .venv/bin/python -m bench.pages

Creates a throwaway database `octopus_bench_pages` on that server (dropped at the end, also
on error), migrates it, and seeds with `INSERT … SELECT generate_series(…)`:
100,000 tasks over the last 30 days (mixed statuses, two users, three plugins) and one more
task with 1,000,000 log lines (2% ERROR, 8% WARNING, ~30% DEBUG, four sources). Then it
renders each page through the whole Django stack (test client, logged-in superuser, templates
and partials), --rounds times, and reports p50/p95/max. Target: ≤ 100 ms p95 for the task
list and the task page.

Baseline in the same run: the login page for an anonymous client (same middleware and base
template, no query of ours).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bench._setup import p50_p95_max, pg_drop_after_django, pg_recreate, pg_urls

BENCH_DB = "octopus_bench_pages"
TARGET_MS = 100.0
TARGETS = {"task list, page 1", "task page, 1M lines"}


def _insert_tasks_sql(n_param: str) -> tuple[str, list]:
    """INSERT … SELECT for Task rows: SQL expressions for the varying columns, each other
    column gets its model default (so new nullable/defaulted fields need no change here)."""
    from tasks_app.models import Task

    varying = {
        "id": "gen_random_uuid()",
        "plugin_id": "(ARRAY['backup', 'http-check', 'report'])[i % 3 + 1]",
        "user_id": "(ARRAY[%(alice)s, %(bob)s])[i % 2 + 1]",
        "status": "CASE WHEN i % 20 = 0 THEN 'FAILED' WHEN i % 50 = 1 THEN 'CANCELLED' "
        "WHEN i % 997 = 0 THEN 'RUNNING' ELSE 'SUCCESS' END",
        "created_at": "now() - make_interval(secs => i * 25.92)",
        "started_at": "now() - make_interval(secs => i * 25.92 - 1)",
        "finished_at": "now() - make_interval(secs => i * 25.92 - 7)",
        "log_total": "20 + i % 40",
        "log_warning": "i % 4",
        "log_error": "CASE WHEN i % 20 = 0 THEN 1 ELSE 0 END",
    }
    columns, values, params = [], [], []
    for field in Task._meta.concrete_fields:
        columns.append(field.column)
        if field.attname in varying:
            values.append(varying[field.attname])
        else:
            default = field.get_default()
            if field.get_internal_type() == "JSONField" and default is not None:
                default = json.dumps(default)
            values.append("%s")
            params.append(default)
    sql = (
        f"INSERT INTO {Task._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM generate_series(1, {n_param}) AS i"
    )
    return sql, params


def _seed(n_tasks: int, n_lines: int):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from plugins_app.models import Plugin
    from tasks_app.models import Task, TaskLog

    users = get_user_model().objects
    admin = users.create_superuser("bench", password="bench-pass-123")
    alice = users.create_user("alice", password="alice-pass-123")
    for pid in ("backup", "http-check", "report"):
        Plugin.objects.create(id=pid, name=pid, file_path=f"{pid}.py", is_active=True)
    started = time.perf_counter()
    sql, params = _insert_tasks_sql(str(int(n_tasks)))
    # %(alice)s / %(bob)s are filled in here; the rest of the params are positional.
    sql = sql.replace("%(alice)s", str(alice.pk)).replace("%(bob)s", str(admin.pk))
    sql = sql.replace("i % ", "i %% ")
    with connection.cursor() as cur:
        cur.execute(sql, params)
    big = Task.objects.create(
        plugin_id="report", user=admin, status="RUNNING", progress_done=420, progress_total=1000
    )
    table = TaskLog._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO {table} (task_id, seq, timestamp, level, source, message, metadata)
            SELECT %s, i, now() - make_interval(secs => (%s - i) / 1000.0),
                   CASE WHEN i %% 50 = 0 THEN 40 WHEN i %% 10 = 0 THEN 30
                        WHEN i %% 3 = 0 THEN 10 ELSE 20 END,
                   (ARRAY['plugin', 'fetcher', 'db', 'stdout'])[i %% 4 + 1],
                   'processed item ' || i || ' of batch ' || (i / 1000) || ' <ok>', NULL
            FROM generate_series(1, %s) AS i
            """,
            [big.pk, n_lines, n_lines],
        )
        cur.execute(
            f"""
            UPDATE tasks_app_task SET
              log_total = (SELECT count(*) FROM {table} WHERE task_id = %s),
              log_warning = (SELECT count(*) FROM {table} WHERE task_id = %s AND level = 30),
              log_error = (SELECT count(*) FROM {table} WHERE task_id = %s AND level = 40)
            WHERE id = %s
            """,
            [big.pk] * 4,
        )
        cur.execute("VACUUM ANALYZE")
    big.refresh_from_db()
    return admin, big, time.perf_counter() - started


def _time_get(client, url: str, rounds: int, **headers) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        print("bench.pages needs DATABASE_URL=postgres://… (a server it may create a DB on)")
        return 2
    admin_url, bench_url = pg_urls(base_url, BENCH_DB)
    pg_recreate(admin_url, BENCH_DB)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/6")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0)
        print(f"seeding {args.tasks:,} tasks and {args.lines:,} log lines …", flush=True)
        admin, big, seeded = _seed(args.tasks, args.lines)
        print(f"seeded in {seeded:.1f}s; big task log_total={big.log_total:,}")

        anonymous, client = Client(), Client()
        client.force_login(admin)
        hx = {"HX-Request": "true"}
        pages = [
            ("baseline: login page", anonymous, "/login/", {}),
            ("task list, page 1", client, "/tasks/", {}),
            ("task list, page 1000", client, "/tasks/?page=1000", {}),
            ("task list, status=FAILED", client, "/tasks/?status=FAILED", {}),
            ("task list, plugin+user", client, "/tasks/?plugin=report&user=alice", {}),
            ("task page, 1M lines", client, f"/tasks/{big.pk}/", {}),
            ("task page, level=ERROR", client, f"/tasks/{big.pk}/?level=ERROR", {}),
            ("load earlier (seq<500000)", client, f"/tasks/{big.pk}/logs/?before_seq=500000", hx),
            ("dashboard", client, "/", {}),
        ]
        for _, who, url, headers in pages:  # warm imports, templates, connections
            _time_get(who, url, 2, **headers)
        print(f"\n{'page':<30} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target")
        failed = False
        for name, who, url, headers in pages:
            p50, p95, worst = p50_p95_max(_time_get(who, url, args.rounds, **headers))
            verdict = ""
            if name in TARGETS:
                ok = p95 <= TARGET_MS
                failed |= not ok
                verdict = f"≤{TARGET_MS:.0f} {'ok' if ok else 'MISSED'}"
            print(f"{name:<30} {p50:8.1f} {p95:8.1f} {worst:8.1f}  {verdict}", flush=True)
        return 1 if failed else 0
    finally:
        pg_drop_after_django(admin_url, BENCH_DB)


if __name__ == "__main__":
    sys.exit(main())

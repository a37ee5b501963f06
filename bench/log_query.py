"""Log queries on a run with 1,000,000 lines, on PostgreSQL: `python -m bench.log_query`.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octopus .venv/bin/python -m bench.log_query

Creates a throwaway database `octopus_bench_api` on that server (dropped at the end, also on
error), migrates it, seeds one task with --lines rows in one `INSERT … SELECT
generate_series(…)` (2% ERROR, 8% WARNING, ~30% DEBUG, the rest INFO; four sources; a
"disk full" needle in one line of 997), then times each API call through the whole Django +
django-ninja stack (test client, Bearer auth), --rounds times, reporting p50/p95/max:

* `search+level=ERROR` — the target (≤ 150 ms): `?search=disk full&level=ERROR`;
* `stats` — the target (≤ 50 ms): level counters on the Task, source counts from the
  trigger-kept table (migration 0004), nothing counted on read;
* for context: `sources`, the first page unfiltered, a deep `after_seq` page, `level=ERROR`,
  `search` without a level (counts the whole run: the expensive case).

Baseline in the same run: the bare SQL of the target query through psycopg (no Django).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench._setup import p50_p95_max, pg_drop_after_django, pg_recreate, pg_urls

BENCH_DB = "octopus_bench_api"
TARGETS_MS = {"search+level=ERROR": 150.0, "stats": 50.0}


def _seed(lines: int):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from accounts_app.models import ApiToken
    from plugins_app.models import Plugin
    from tasks_app.models import Task, TaskLog

    user = get_user_model().objects.create_superuser("bench", password="bench-pass-123")
    plugin = Plugin.objects.create(id="bench", name="bench", file_path="bench.py", is_active=True)
    task = Task.objects.create(plugin=plugin, user=user, status="SUCCESS")
    table = TaskLog._meta.db_table
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO {table} (task_id, seq, timestamp, level, source, message, metadata)
            SELECT %s, i, now() - make_interval(secs => (%s - i) / 1000.0),
                   CASE WHEN i %% 50 = 0 THEN 40 WHEN i %% 10 = 0 THEN 30
                        WHEN i %% 3 = 0 THEN 10 ELSE 20 END,
                   (ARRAY['plugin', 'fetcher', 'db', 'stdout'])[i %% 4 + 1],
                   'processed item ' || i || ' of batch ' || (i / 1000)
                     || CASE WHEN i %% 997 = 0 THEN ' - Disk full on /dev/sda1' ELSE '' END,
                   NULL
            FROM generate_series(1, %s) AS i
            """,
            [task.pk, lines, lines],
        )
        cur.execute(
            f"""
            UPDATE tasks_app_task SET
              log_total = (SELECT count(*) FROM {table} WHERE task_id = %s),
              log_debug = (SELECT count(*) FROM {table} WHERE task_id = %s AND level = 10),
              log_info = (SELECT count(*) FROM {table} WHERE task_id = %s AND level = 20),
              log_warning = (SELECT count(*) FROM {table} WHERE task_id = %s AND level = 30),
              log_error = (SELECT count(*) FROM {table} WHERE task_id = %s AND level = 40)
            WHERE id = %s
            """,
            [task.pk] * 6,
        )
        cur.execute(f"VACUUM ANALYZE {table}")
    seeded = time.perf_counter() - started
    _, raw = ApiToken.issue(user=user)
    task.refresh_from_db()
    return task, raw, seeded


def _time_call(client, url: str, token: str, rounds: int) -> tuple[list[float], dict | list]:
    samples = []
    body = None
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
        body = response.json()
    return samples, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        print("bench.log_query needs DATABASE_URL=postgres://… (a server it may create a DB on)")
        return 2
    admin_url, bench_url = pg_urls(base_url, BENCH_DB)
    pg_recreate(admin_url, BENCH_DB)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        call_command("migrate", verbosity=0)
        print(f"seeding {args.lines:,} lines …", flush=True)
        task, token, seeded = _seed(args.lines)
        print(f"seeded in {seeded:.1f}s; log_total={task.log_total:,} errors={task.log_error:,}")
        client = Client()
        base = f"/api/v1/tasks/{task.pk}/logs"
        results: list[tuple[str, list[float], str]] = []

        # Warm the stack (imports, URL resolver, first token lookup) outside the figures.
        _time_call(client, "/api/v1/plugins", token, 3)
        calls = [
            ("search+level=ERROR", f"{base}?search=disk%20full&level=ERROR&limit=100"),
            ("stats", f"{base}/stats"),
            ("sources", f"{base}/sources"),
            ("first page, no filter", f"{base}?limit=100"),
            ("after_seq=999000", f"{base}?after_seq=999000&limit=1000"),
            ("level=ERROR page", f"{base}?level=ERROR&limit=100"),
            ("search, no level", f"{base}?search=disk%20full&limit=100"),
        ]
        for name, url in calls:
            samples, body = _time_call(client, url, token, args.rounds)
            note = f"total={body['total']:,}" if isinstance(body, dict) and "total" in body else ""
            if name == "stats":
                note = f"by_source={body['by_source']}"
            results.append((name, samples, note))

        # Baseline: the target's SQL alone (COUNT + first page), straight through psycopg.
        sql_samples = []
        with connection.cursor() as cur:
            for _ in range(args.rounds):
                started = time.perf_counter()
                cur.execute(
                    "SELECT count(*) FROM tasks_app_tasklog WHERE task_id = %s AND seq > 0 "
                    "AND level IN (40) AND UPPER(message::text) LIKE UPPER(%s)",
                    [task.pk, "%disk full%"],
                )
                cur.fetchone()
                cur.execute(
                    "SELECT seq, timestamp, level, source, message, metadata "
                    "FROM tasks_app_tasklog WHERE task_id = %s AND seq > 0 AND level IN (40) "
                    "AND UPPER(message::text) LIKE UPPER(%s) ORDER BY seq LIMIT 100",
                    [task.pk, "%disk full%"],
                )
                cur.fetchall()
                sql_samples.append((time.perf_counter() - started) * 1000)
            cur.execute(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM tasks_app_tasklog "
                "WHERE task_id = %s AND seq > 0 AND level IN (40) "
                "AND UPPER(message::text) LIKE UPPER(%s)",
                [task.pk, "%disk full%"],
            )
            plan = "\n".join(row[0] for row in cur.fetchall())
        results.append(("baseline: bare SQL of target", sql_samples, "COUNT + page, psycopg"))

        print(f"\n{'call':<30} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target  note")
        failed = False
        for name, samples, note in results:
            p50, p95, worst = p50_p95_max(samples)
            target = TARGETS_MS.get(name)
            verdict = ""
            if target is not None:
                ok = p95 <= target
                failed |= not ok
                verdict = f"≤{target:.0f} {'ok' if ok else 'MISSED'}"
            print(f"{name:<30} {p50:8.1f} {p95:8.1f} {worst:8.1f}  {verdict:<7} {note}")
        print("\nplan of the target's COUNT:\n" + plan)
        connection.close()
        return 1 if failed else 0
    finally:
        pg_drop_after_django(admin_url, BENCH_DB)


if __name__ == "__main__":
    sys.exit(main())

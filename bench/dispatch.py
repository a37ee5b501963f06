"""Dispatch latency bench: `task_create` → the task observed RUNNING, against a raw Celery
no-op round trip measured in the same run.

    .venv/bin/python -m bench.dispatch --db postgres --runs 200   # or --db sqlite

Starts its own worker (`celery worker -c 1 --include bench.dispatch`) on a throwaway
database and Redis db 4 (REDIS_URL overrides). Baseline: `noop.apply_async().get()` — broker
there, result backend back. Measured: `task_create` as the API's POST calls it (autocommit),
then this process polls the row (one plain SELECT every 0.5 ms) until its status is RUNNING;
each run is let finish (and 50 ms pass) before the next starts, so the worker is idle when a
measurement begins. The two are measured alternately, one of each per round.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from celery import shared_task

# Pause between runs so the worker has acked the previous message (acks_late: after the
# task returns) and is idle when the next measurement starts; same for both paths.
IDLE = 0.05


@shared_task(name="bench.noop")
def noop() -> None:
    return None


def status(cursor, key) -> str:
    """The run's status by a plain query: the poll is part of what is measured, and the ORM
    building a query every 0.5 ms would compete for the CPU with the worker it is timing."""
    from tasks_app.models import Task

    cursor.execute(f"SELECT status FROM {Task._meta.db_table} WHERE id = %s", key)
    return cursor.fetchone()[0]


def start_worker(db) -> subprocess.Popen:
    import redis
    from django.conf import settings

    from octopus.celery import WORKER_KEY_PREFIX

    hostname = f"bench-{os.getpid()}@localhost"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(db.tmp / "worker.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "octopus", "worker", "-l", "warning", "-c", "1",
         "-n", hostname, "--include", "bench.dispatch", "--without-gossip", "--without-mingle"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + 60
    while not client.exists(WORKER_KEY_PREFIX + hostname):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((db.tmp / "worker.log").read_text()[-3000:])
        time.sleep(0.1)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    from bench._setup import bench_django, percentile, register_plugin

    db = bench_django(args.db)
    worker = None
    try:
        import redis
        from django.conf import settings
        from django.db import connection

        from tasks_app.models import Task, TaskStatus
        from tasks_app.services import task_create

        redis.Redis.from_url(settings.REDIS_URL).delete("celery")
        plugin = register_plugin(db, "noop", "def run(context):\n    return None\n")
        worker = start_worker(db)
        cursor = connection.cursor()

        def raw_round_trip() -> float:
            started = time.perf_counter()
            noop.apply_async().get(timeout=30)
            return time.perf_counter() - started

        def dispatch() -> tuple[float, float, float]:
            started = time.perf_counter()
            # As POST /api/v1/tasks calls it: in autocommit (no ATOMIC_REQUESTS), so the
            # INSERT commits at once and the enqueue follows it.
            task = task_create(plugin=plugin, params={}, user=None)
            committed = time.perf_counter()
            key = [Task._meta.pk.get_db_prep_value(task.pk, connection)]
            while status(cursor, key) == TaskStatus.PENDING:
                time.sleep(0.0005)
            running = time.perf_counter()
            while status(cursor, key) not in (TaskStatus.SUCCESS, TaskStatus.FAILED):
                time.sleep(0.002)
            task.refresh_from_db()
            if task.status != TaskStatus.SUCCESS:
                raise SystemExit(f"the no-op run ended {task.status}: {task.error}")
            claimed = (task.started_at - task.created_at).total_seconds()
            return running - started, committed - started, claimed

        # Warm up both paths (imports, connections), then alternate them so that both see
        # the same machine: a quiet spell or a busy one lands on both, not on one.
        for _ in range(5):
            raw_round_trip()
            dispatch()
            time.sleep(IDLE)
        raw, ours, create, claim = [], [], [], []
        for _ in range(args.runs):
            raw.append(raw_round_trip())
            time.sleep(IDLE)
            observed, created, claimed = dispatch()
            ours.append(observed)
            create.append(created)
            claim.append(claimed)
            time.sleep(IDLE)
        ms = 1000
        raw50, ours50 = percentile(raw, 50) * ms, percentile(ours, 50) * ms
        print(f"database: {connection.vendor}; runs: {args.runs}")
        raw95 = percentile(raw, 95) * ms
        print(f"raw Celery no-op round trip: p50 {raw50:.1f} ms, p95 {raw95:.1f} ms")
        print(
            f"task_create → RUNNING observed: p50 {ours50:.1f} ms, "
            f"p95 {percentile(ours, 95) * ms:.1f} ms  (p50 = {ours50 / raw50:.2f}× baseline)"
        )
        print(
            f"  of which task_create + commit: p50 {percentile(create, 50) * ms:.1f} ms; "
            f"row created → claimed (worker clock): p50 {percentile(claim, 50) * ms:.1f} ms"
        )
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        db.teardown()


if __name__ == "__main__":
    main()

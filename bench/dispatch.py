"""Dispatch latency bench: `task_create` → the task observed RUNNING, against a raw Celery
no-op round trip measured in the same run.

    .venv/bin/python -m bench.dispatch --db postgres --runs 200   # or --db sqlite

Starts its own worker (`celery worker -c 1 --include bench.dispatch`) on a throwaway
database and Redis db 4 (REDIS_URL overrides). Baseline: `noop.apply_async().get()` — broker
there, result backend back. Measured: `task_create` in a transaction (enqueue on commit),
then this process polls the row every 0.5 ms until its status is RUNNING; each run is let
finish (and 50 ms pass) before the next starts, so the worker is idle when a measurement
begins.
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
        from django.db import connection, transaction

        from tasks_app.models import Task, TaskStatus
        from tasks_app.services import task_create

        redis.Redis.from_url(settings.REDIS_URL).delete("celery")
        plugin = register_plugin(db, "noop", "def run(context):\n    return None\n")
        worker = start_worker(db)
        # Warm up both paths (imports, connections).
        for _ in range(5):
            noop.apply_async().get(timeout=30)
        raw = []
        for _ in range(args.runs):
            started = time.perf_counter()
            noop.apply_async().get(timeout=30)
            raw.append(time.perf_counter() - started)
            time.sleep(IDLE)
        ours, create, claim = [], [], []
        for i in range(args.runs + 5):
            started = time.perf_counter()
            with transaction.atomic():
                task = task_create(plugin=plugin, params={}, user=None)
            query = Task.objects.filter(pk=task.pk).values_list("status", flat=True)
            committed = time.perf_counter()
            while query.get() == TaskStatus.PENDING:
                time.sleep(0.0005)
            if i >= 5:
                ours.append(time.perf_counter() - started)
                create.append(committed - started)
                task.refresh_from_db()
                claim.append((task.started_at - task.created_at).total_seconds())
            while query.get() not in (TaskStatus.SUCCESS, TaskStatus.FAILED):
                time.sleep(0.002)
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

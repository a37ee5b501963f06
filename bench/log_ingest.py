"""Log ingest bench: one run logging 200,000 lines as fast as it can.

    .venv/bin/python -m bench.log_ingest --db postgres   # or --db sqlite

Runs the real pipeline in this process (`runner.execute_task`: fork, pipe, batches, COPY /
bulk insert) against a throwaway database and reports:

1. end-to-end rate: the plugin's first log call → `execute_task` returned (the final status is
   written after the last row, so this is at least "last row committed"), with checks that
   every line is stored and seq is exactly 1..N;
2. baselines in the same run: raw psycopg COPY of the same rows (PostgreSQL) or one
   executemany (SQLite), and Django `save()` per row on a subset, extrapolated — with ratios;
3. per-call cost of `context.log.info` vs stdlib `logging.info` to an in-memory StreamHandler,
   both measured inside the plugin process while the pipeline runs;
4. peak memory of the worker and plugin processes while the database is much slower than the
   plugin (PostgreSQL: a statement trigger sleeps 0.2 s per batch), against the same run with
   an unthrottled database.
"""

from __future__ import annotations

import argparse
import threading
import time

from bench._setup import bench_django, register_plugin

LINES = 200_000

INGEST = """
import time
def run(context, lines: int):
    info = context.log.info
    t0 = time.time()
    for i in range(lines):
        info("processed item %d of the batch", i)
    return {"t0": t0, "logged": time.time() - t0}
"""

PER_CALL = """
import io, logging, time
def run(context, calls: int, rounds: int):
    stream = io.StringIO()
    std = logging.getLogger("bench.stdlib")
    std.propagate = False  # only the in-memory handler, not the run's capture
    std.addHandler(logging.StreamHandler(stream))
    std.setLevel(logging.INFO)
    ours, theirs = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(calls):
            context.log.info("processed item %d of the batch", i)
        ours.append((time.perf_counter() - t) / calls)
        stream.seek(0); stream.truncate()
        t = time.perf_counter()
        for i in range(calls):
            std.info("processed item %d of the batch", i)
        theirs.append((time.perf_counter() - t) / calls)
    return {"ours_us": min(ours) * 1e6, "stdlib_us": min(theirs) * 1e6}
"""


def run_ingest(db, lines: int) -> dict:
    from django.db import connection

    from tasks_app.models import Task, TaskLog, TaskStatus
    from tasks_app.runner import execute_task

    plugin = register_plugin(db, "ingest", INGEST)
    task = Task.objects.create(plugin=plugin, params={"lines": lines})
    execute_task(str(task.pk), worker="bench")
    ended = time.time()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCESS, task.error
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*), MIN(seq), MAX(seq), COUNT(DISTINCT seq) FROM "
            f"{TaskLog._meta.db_table} WHERE task_id = %s",
            [task.pk.hex if connection.vendor == "sqlite" else task.pk],
        )
        count, low, high, distinct = cursor.fetchone()
    plugin_lines = TaskLog.objects.filter(task=task, source="plugin").count()
    assert plugin_lines == lines, (plugin_lines, lines)
    assert count == distinct == high and low == 1, (count, low, high, distinct)
    assert task.log_total == count
    elapsed = ended - task.result["t0"]
    return {"task": task, "elapsed": elapsed, "rate": lines / elapsed, "rows": count,
            "plugin_loop": task.result["logged"]}  # fmt: skip


def rows_like(task, lines: int) -> list[tuple]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return [
        (task.pk, i + 1, now, 20, "plugin", f"processed item {i} of the batch", None)
        for i in range(lines)
    ]


def baseline_raw(db, lines: int) -> float:
    """Lines/s of the fastest plain insert of the same rows into the same table."""
    from django.db import connection, transaction

    from tasks_app.models import Task, TaskLog

    task = Task.objects.create(plugin_id="ingest")
    rows = rows_like(task, lines)
    table = TaskLog._meta.db_table
    columns = "task_id, seq, timestamp, level, source, message, metadata"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(r[0].hex, r[1], r[2].replace(tzinfo=None).isoformat(" "), *r[3:]) for r in rows],
            )
    return lines / (time.perf_counter() - started)


def baseline_save(subset: int) -> float:
    """Lines/s of `TaskLog(...).save()` per row (autocommit), on `subset` rows."""
    from tasks_app.models import Task, TaskLog

    task = Task.objects.create(plugin_id="ingest")
    rows = rows_like(task, subset)
    started = time.perf_counter()
    for _, seq, ts, level, source, message, meta in rows:
        TaskLog(task=task, seq=seq, timestamp=ts, level=level, source=source,
                message=message, metadata=meta).save()  # fmt: skip
    return subset / (time.perf_counter() - started)


def per_call(db) -> dict:
    from tasks_app.models import Task
    from tasks_app.runner import execute_task

    plugin = register_plugin(db, "per-call", PER_CALL)
    task = Task.objects.create(plugin=plugin, params={"calls": 50_000, "rounds": 5})
    execute_task(str(task.pk), worker="bench")
    task.refresh_from_db()
    return task.result


class PeakRss:
    """Samples the RSS of this process and its children every 20 ms."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.peak_self = self.peak_child = 0
        self.base_self = self.me.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.wait(0.02):
            try:
                self.peak_self = max(self.peak_self, self.me.memory_info().rss)
                for child in self.me.children():
                    self.peak_child = max(self.peak_child, child.memory_info().rss)
            except psutil.Error:
                pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def slow_database(on: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if on:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION bench_slow() RETURNS trigger AS $$ BEGIN "
                "PERFORM pg_sleep(0.2); RETURN NULL; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER bench_slow AFTER INSERT ON tasks_app_tasklog "
                "FOR EACH STATEMENT EXECUTE FUNCTION bench_slow()"
            )
        else:
            cursor.execute("DROP TRIGGER IF EXISTS bench_slow ON tasks_app_tasklog")


def memory(db, lines: int, slow: bool) -> dict:
    from django.conf import settings

    if slow:
        slow_database(True)
    try:
        with PeakRss() as rss:
            result = run_ingest(db, lines)
    finally:
        if slow:
            slow_database(False)
    mib = 1024 * 1024
    return {
        "rate": result["rate"],
        "worker_peak_mib": rss.peak_self / mib,
        "worker_growth_mib": (rss.peak_self - rss.base_self) / mib,
        "plugin_peak_mib": rss.peak_child / mib,
        "buffer": settings.LOG_BUFFER_MAX_LINES,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--lines", type=int, default=LINES)
    parser.add_argument("--save-subset", type=int, default=5000)
    args = parser.parse_args()
    db = bench_django(args.db)
    try:
        from django.db import connection

        print(f"database: {connection.vendor}; lines: {args.lines:,}")
        ingest = run_ingest(db, args.lines)
        print(
            f"pipeline end-to-end: {ingest['elapsed']:.2f} s = {ingest['rate']:,.0f} lines/s "
            f"(all {args.lines:,} stored, seq 1..{ingest['rows']:,} contiguous incl. system "
            f"lines; the plugin's own loop took {ingest['plugin_loop']:.2f} s)"
        )
        raw = baseline_raw(db, args.lines)
        save = baseline_save(args.save_subset)
        kind = "raw psycopg COPY" if connection.vendor == "postgresql" else "raw executemany"
        print(f"baseline {kind}: {raw:,.0f} lines/s  (pipeline = {ingest['rate'] / raw:.2f}×)")
        print(
            f"baseline Django save() per row ({args.save_subset:,} rows, extrapolated): "
            f"{save:,.0f} lines/s = {args.lines / save:.1f} s for {args.lines:,} "
            f"(pipeline = {ingest['rate'] / save:.1f}×)"
        )
        calls = per_call(db)
        ratio = calls["ours_us"] / calls["stdlib_us"]
        print(
            f"per call: context.log.info {calls['ours_us']:.2f} µs vs stdlib logging.info to "
            f"StringIO {calls['stdlib_us']:.2f} µs (ratio {ratio:.2f})"
        )
        if connection.vendor == "postgresql":
            fast = memory(db, args.lines, slow=False)
            slow = memory(db, args.lines, slow=True)
            for name, m in (("normal database", fast), ("database + 0.2 s per batch", slow)):
                print(
                    f"memory, {name}: {m['rate']:,.0f} lines/s; worker peak RSS "
                    f"{m['worker_peak_mib']:.0f} MiB (+{m['worker_growth_mib']:.1f} MiB), "
                    f"plugin process peak RSS {m['plugin_peak_mib']:.0f} MiB "
                    f"(buffer {m['buffer']:,} lines)"
                )
    finally:
        db.teardown()


if __name__ == "__main__":
    main()

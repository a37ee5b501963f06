"""Task workflows with side effects: create (validate + enqueue), cancel, reap, requeue,
clean up.

Callers: the API and pages (task_create / task_cancel), the `run_plugin`, `reap_tasks` and
`cleanup_tasks` commands, the beat entries in `tasks_app/tasks.py`. Execution itself is in
`tasks_app/runner.py`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from plugins_app.models import Plugin, PluginVersion
from tasks_app import realtime
from tasks_app.models import TERMINAL_STATUSES, Task, TaskLog, TaskStatus

logger = logging.getLogger(__name__)


class ParamsInvalid(Exception):
    """The params break the plugin's schema. `errors` maps a field name to its messages;
    problems with the whole object are under `""`."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(
            "; ".join(f"{field or 'params'}: {' '.join(msgs)}" for field, msgs in errors.items())
        )


class PluginNotRunnable(Exception):
    """The plugin cannot be run now. `reason` is "inactive", "missing" or "error"."""

    MESSAGES = {
        "inactive": "the plugin {id} is not active",
        "missing": "the file of plugin {id} is missing",
        "error": "the plugin {id} has an error: {error}",
    }

    def __init__(self, plugin: Plugin, reason: str):
        self.plugin = plugin
        self.reason = reason
        super().__init__(
            self.MESSAGES[reason].format(id=plugin.pk, error=plugin.discovery_error or "?")
        )


def plugin_not_runnable_reason(plugin: Plugin) -> str | None:
    """Why runs of `plugin` (as read) must not start: "missing", "error", "inactive"; None
    when it may run."""
    if plugin.is_missing:
        return "missing"
    if plugin.discovery_error:
        return "error"
    if not plugin.is_active:
        return "inactive"
    return None


@functools.lru_cache(maxsize=512)
def _schema_problem(schema_json: str) -> str | None:
    """Why a schema (as canonical JSON) is not valid JSON Schema, or None. Checking against
    the meta-schema costs ~2 ms, a third of a run's dispatch; a plugin's schema changes only
    with its file, so each distinct schema is checked once per process."""
    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as exc:
        return exc.message
    return None


def params_validate(schema: dict, params: Any) -> dict:
    """Validated params with the schema's top-level defaults filled in (a new dict).

    Raises ParamsInvalid with messages per field. Costs one jsonschema validation pass."""
    if not isinstance(params, dict):
        raise ParamsInvalid({"": ["Parameters must be a JSON object."]})
    schema = schema or {"type": "object"}
    problem = _schema_problem(json.dumps(schema, sort_keys=True, default=str))
    if problem:
        raise ParamsInvalid({"": [f"The plugin's parameter schema is invalid: {problem}"]})
    values = dict(params)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in values and isinstance(prop, dict) and "default" in prop:
            values[name] = prop["default"]
    errors: dict[str, list[str]] = {}
    validator = Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(values), key=lambda e: list(e.path)):
        if error.validator == "required" and not error.path:
            for name in error.validator_value:
                if name not in values:
                    errors.setdefault(name, []).append("This field is required.")
            continue
        if error.validator == "additionalProperties" and not error.path:
            allowed = set((error.schema.get("properties") or {}).keys())
            for name in values:
                if name not in allowed:
                    errors.setdefault(name, []).append("Unknown parameter.")
            continue
        field = str(error.path[0]) if error.path else ""
        message = error.message
        if len(error.path) > 1:
            message = f"{'.'.join(str(p) for p in list(error.path)[1:])}: {message}"
        errors.setdefault(field, []).append(message)
    if errors:
        raise ParamsInvalid({k: list(dict.fromkeys(v)) for k, v in errors.items()})
    return values


def task_create(*, plugin: Plugin, params: dict, user, schedule=None) -> Task:
    """Validate `params` against the plugin's schema, save a PENDING Task and enqueue it once
    the transaction commits (a worker never looks for a row that is not committed yet).

    `plugin` is taken as the caller read it (every caller reads it in the same request); the
    worker checks again that the plugin may run when it claims the run, which also covers a
    plugin deactivated while the run waited in the queue. Raises PluginNotRunnable or
    ParamsInvalid, with nothing saved. `schedule` (a schedules_app.Schedule) is stored on the
    runs a schedule fires. Costs one INSERT (the version is looked up inside it) and, after
    commit, one Redis LPUSH: this is the dispatch path. If the enqueue fails the task is
    marked FAILED at once."""
    reason = plugin_not_runnable_reason(plugin)
    if reason:
        raise PluginNotRunnable(plugin, reason)
    values = params_validate(plugin.params_schema, params)
    version = PluginVersion.objects.filter(plugin_id=plugin.pk, sha256=plugin.sha256)
    task = Task.objects.create(
        plugin=plugin,
        plugin_version_id=Subquery(version.order_by().values("pk")[:1]),
        plugin_sha256=plugin.sha256,
        params=values,
        user=user if getattr(user, "pk", None) else None,
        schedule=schedule,
    )
    # The instance holds the subquery, not its value: defer the field (read if ever used).
    del task.__dict__["plugin_version_id"]
    transaction.on_commit(lambda: _enqueue(task.pk))
    return task


def _enqueue(task_id) -> None:
    from tasks_app.tasks import run_task

    try:
        # The message carries the run's id as its own: the requeue check finds it by that.
        run_task.apply_async(args=[str(task_id)], task_id=str(task_id))
    except Exception as exc:
        logger.exception("could not enqueue task %s", task_id)
        task = Task(pk=task_id)
        if task.mark_finished(
            TaskStatus.FAILED, error=f"could not queue the run: {exc}",
            from_statuses=(TaskStatus.PENDING,),
        ):  # fmt: skip
            realtime.publish_status(task)


def task_cancel(*, task: Task, user=None) -> Task:
    """Cancel a run; returns the task as it now is.

    PENDING → CANCELLED at once (the queued message will find nothing to claim). RUNNING →
    `cancel_requested_at` is set; the worker sees it within ~0.5 s, sets `context.cancelled`,
    kills the plugin after `TASK_CANCEL_GRACE_SECONDS`, and writes CANCELLED after the last
    log line. A finished task is returned unchanged (cancelling is idempotent). Both steps
    are compare-and-set UPDATEs, so a cancel racing the worker's claim is retried once."""
    for _ in range(2):
        now = timezone.now()
        who = getattr(user, "username", "") or ""
        cancelled = Task.objects.filter(pk=task.pk, status=TaskStatus.PENDING).update(
            status=TaskStatus.CANCELLED, finished_at=now, cancel_requested_at=now,
            error=f"cancelled before it started{' by ' + who if who else ''}",
        )  # fmt: skip
        if cancelled:
            task.refresh_from_db()
            realtime.publish_status(task)
            return task
        if Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING).exists():
            Task.objects.filter(
                pk=task.pk, status=TaskStatus.RUNNING, cancel_requested_at__isnull=True
            ).update(cancel_requested_at=now)
            break
        task.refresh_from_db()
        if task.is_terminal:
            break
    task.refresh_from_db()
    return task


def tasks_reap_lost(*, lost_after_seconds: int | None = None) -> list[str]:
    """Mark RUNNING tasks whose heartbeat is older than the bound FAILED "worker lost".
    Returns their ids.

    Policy: a lost run is failed, never re-run (plugins need not be idempotent). The UPDATE
    repeats the staleness condition, so a worker that beats between our SELECT and UPDATE
    keeps its task. Costs one indexed SELECT plus one UPDATE per lost task."""
    bound = timezone.now() - timedelta(
        seconds=lost_after_seconds or settings.TASK_LOST_AFTER_SECONDS
    )
    stale = Task.objects.filter(status=TaskStatus.RUNNING, heartbeat_at__lt=bound)
    reaped = []
    for task_id, heartbeat, worker in stale.values_list("pk", "heartbeat_at", "worker"):
        error = (
            f"worker lost: no heartbeat from {worker or 'its worker'} "
            f"since {heartbeat:%Y-%m-%d %H:%M:%S} UTC"
        )
        if Task.objects.filter(
            pk=task_id, status=TaskStatus.RUNNING, heartbeat_at__lt=bound
        ).update(status=TaskStatus.FAILED, finished_at=timezone.now(), error=error):
            reaped.append(str(task_id))
            realtime.publish_status(Task.objects.get(pk=task_id))
    return reaped


def broker_queued_task_ids() -> set[str]:
    """Ids of the runs whose message is waiting in the broker's queue (read, not taken).
    One LRANGE of the queue: fine for the thousands of messages a backlog holds."""
    from octopus.celery import app

    with app.connection_for_read() as conn:
        raw = conn.default_channel.client.lrange(app.conf.task_default_queue, 0, -1)
    ids = set()
    for item in raw:
        try:
            headers = json.loads(item).get("headers") or {}
        except (ValueError, AttributeError):
            continue  # not a Celery message; not ours to judge
        if headers.get("task") == "tasks_app.run_task":
            ids.add(str(headers.get("id")))
            ids.add(str(headers.get("argsrepr", "")).strip("[]()',\" "))
    return ids


def tasks_requeue_lost(*, after_seconds: int | None = None) -> list[str]:
    """Enqueue again the PENDING runs older than the bound whose message is not waiting in
    the broker — lost with a Redis that restarted empty, or taken by a worker that died
    before it could claim the run. Returns their ids.

    A second message for a run is harmless: the claim is a compare-and-set, so the extra
    delivery finds nothing to claim. Runs waiting in a long queue keep their message and are
    left alone. Costs one indexed SELECT and, when some PENDING run is old, one LRANGE."""
    bound = timezone.now() - timedelta(seconds=after_seconds or settings.TASK_REQUEUE_AFTER_SECONDS)
    stale = list(
        Task.objects.filter(status=TaskStatus.PENDING, created_at__lt=bound)
        .order_by("created_at")
        .values_list("pk", flat=True)[:1000]
    )
    if not stale:
        return []
    queued = broker_queued_task_ids()
    requeued = []
    for task_id in stale:
        if str(task_id) not in queued:
            logger.warning("task %s is PENDING without a message in the broker; requeued", task_id)
            _enqueue(task_id)
            requeued.append(str(task_id))
    return requeued


def tasks_reap_pass(*, lost_after_seconds: int | None = None) -> dict[str, list[str]]:
    """One pass of the reaper: fail RUNNING runs whose worker went silent, queue again
    PENDING runs whose message is gone. Run by the beat process every
    TASK_REAP_INTERVAL_SECONDS (octopus/celery.py) and by `manage.py reap_tasks`."""
    failed = tasks_reap_lost(lost_after_seconds=lost_after_seconds)
    requeued = tasks_requeue_lost()
    for task_id in failed:
        logger.warning("task %s: its worker went silent; marked FAILED (worker lost)", task_id)
    return {"failed": failed, "requeued": requeued}


AGE_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """ "30d" → 30 days; units s, m, h, d, w. Raises ValueError with a readable message."""
    match = AGE_PATTERN.match(text or "")
    if not match:
        raise ValueError(
            f"{text!r} is not an age; use a whole number and a unit: 90s, 30m, 12h, 30d, 2w"
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    if amount <= 0:
        raise ValueError(f"{text!r}: the age must be more than zero")
    return timedelta(**{AGE_UNITS[unit]: amount})


def tasks_cleanup(
    *,
    older_than: timedelta,
    statuses: list[str] | None = None,
    dry_run: bool = False,
    batch_size: int = 200,
) -> dict[str, int]:
    """Delete finished tasks created more than `older_than` ago, with their log lines.

    Returns `{"tasks": n, "logs": n}` (what was, or with `dry_run` would be, deleted). Works
    in batches of `batch_size` tasks, each its own transaction, so a huge history never holds
    one long lock. Log rows go first with a raw DELETE (no per-row signals: the cascade
    collector would load every line into memory). Raises ValueError for a non-final status."""
    statuses = list(statuses or TERMINAL_STATUSES)
    bad = [s for s in statuses if s not in TERMINAL_STATUSES]
    if bad:
        raise ValueError(
            f"cannot clean up tasks in status {', '.join(bad)}; choose from "
            + ", ".join(TERMINAL_STATUSES)
        )
    cutoff = timezone.now() - older_than
    candidates = Task.objects.filter(status__in=statuses, created_at__lt=cutoff)
    if dry_run:
        ids = candidates.values("pk")
        return {
            "tasks": candidates.count(),
            "logs": TaskLog.objects.filter(task_id__in=ids).count(),
        }
    totals = {"tasks": 0, "logs": 0}
    while True:
        ids = list(candidates.order_by("created_at").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            logs = TaskLog.objects.filter(task_id__in=ids)
            totals["logs"] += logs._raw_delete(logs.db)
            _, per_model = Task.objects.filter(pk__in=ids).delete()
            totals["tasks"] += per_model.get(Task._meta.label, 0)
    return totals

"""A run of a plugin (Task) and the lines it logged (TaskLog).

The run's state machine lives here. Every transition is a compare-and-set UPDATE filtered on
the current status; its row count says whether this caller won. That is what makes a
duplicate Celery delivery, a cancel racing a finish, or the reaper racing a slow worker safe.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connection, models
from django.utils import timezone


class TaskStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


TERMINAL_STATUSES = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED)


class LogLevel(models.IntegerChoices):
    DEBUG = 10, "DEBUG"
    INFO = 20, "INFO"
    WARNING = 30, "WARNING"
    ERROR = 40, "ERROR"

    @classmethod
    def from_name(cls, name: str) -> LogLevel:
        """`"warning"` → WARNING; `CRITICAL` folds into ERROR. Raises ValueError otherwise."""
        key = name.strip().upper()
        if key == "CRITICAL":
            key = "ERROR"
        if key == "WARN":
            key = "WARNING"
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown log level {name!r}") from None

    @classmethod
    def from_number(cls, number: int) -> LogLevel:
        """Map a stdlib logging level number to ours (below INFO is DEBUG, above is ERROR)."""
        if number >= 40:
            return cls.ERROR
        if number >= 30:
            return cls.WARNING
        if number >= 20:
            return cls.INFO
        return cls.DEBUG


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plugin = models.ForeignKey("plugins_app.Plugin", on_delete=models.PROTECT, related_name="tasks")
    plugin_version = models.ForeignKey(
        "plugins_app.PluginVersion", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="tasks",
    )  # fmt: skip
    plugin_sha256 = models.CharField(max_length=64, blank=True)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="octopus_tasks",
    )  # fmt: skip
    schedule = models.ForeignKey(
        "schedules_app.Schedule", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="tasks",
    )  # fmt: skip

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    progress_done = models.FloatField(null=True, blank=True)
    progress_total = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True)

    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    # Kept as the lines are written so stats never count on read.
    log_total = models.PositiveIntegerField(default=0)
    log_debug = models.PositiveIntegerField(default=0)
    log_info = models.PositiveIntegerField(default=0)
    log_warning = models.PositiveIntegerField(default=0)
    log_error = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("view_all_tasks", "Can view every user's tasks")]
        indexes = [
            models.Index(fields=["-created_at"], name="task_created_idx"),
            models.Index(fields=["status", "-created_at"], name="task_status_idx"),
            models.Index(fields=["plugin", "-created_at"], name="task_plugin_idx"),
            models.Index(fields=["user", "-created_at"], name="task_user_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=TaskStatus.values), name="task_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plugin_id} {self.id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def progress_percent(self) -> float | None:
        if self.progress_done is None or not self.progress_total:
            return None
        return max(0.0, min(100.0, 100.0 * self.progress_done / self.progress_total))

    def mark_running(self, *, worker: str = "") -> bool:
        """Claim a PENDING run for this worker. False when someone else owns it (or it was
        cancelled first): a duplicate delivery must then do nothing.

        One UPDATE, written out rather than built by the ORM, and no re-read: the claim is
        the step a run's dispatch latency is measured to (bench/dispatch.py), and building
        the query cost more than sending it. The fields it set are set here too; `attempt`,
        incremented in the database, becomes deferred (read again only if used)."""
        now = timezone.now()
        field = Task._meta.get_field
        stamp = field("started_at").get_db_prep_value(now, connection)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Task._meta.db_table} SET status = %s, started_at = %s,"
                " heartbeat_at = %s, worker = %s, attempt = attempt + 1"
                " WHERE id = %s AND status = %s",
                [TaskStatus.RUNNING, stamp, stamp, worker,
                 field("id").get_db_prep_value(self.pk, connection), TaskStatus.PENDING],
            )  # fmt: skip
            claimed = cursor.rowcount == 1
        if claimed:
            self.status, self.started_at, self.heartbeat_at = TaskStatus.RUNNING, now, now
            self.worker = worker
            self.__dict__.pop("attempt", None)
        return claimed

    def mark_finished(
        self,
        status: str,
        *,
        result=None,
        error: str = "",
        traceback: str = "",
        from_statuses: tuple[str, ...] = (TaskStatus.RUNNING,),
    ) -> bool:
        """Move the run to a terminal status if it is still in one of `from_statuses`.

        Returns False when another actor (the reaper, a cancel) finished it first; the first
        terminal status wins and is never overwritten. One UPDATE.
        """
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a terminal status")
        now = timezone.now()
        done = Task.objects.filter(pk=self.pk, status__in=from_statuses).update(
            status=status, finished_at=now, result=result, error=error, traceback=traceback,
        )  # fmt: skip
        if done:
            self.refresh_from_db()
        return bool(done)

    def beat(self) -> bool:
        """Refresh the heartbeat of a RUNNING run; False if it is no longer running."""
        return bool(
            Task.objects.filter(pk=self.pk, status=TaskStatus.RUNNING).update(
                heartbeat_at=timezone.now()
            )
        )


class TaskLog(models.Model):
    """One line a run logged. `seq` is 1, 2, 3 … without gaps within a task."""

    MESSAGE_LIMIT = 32 * 1024
    TRUNCATION_MARKER = " … [truncated {dropped} characters]"

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraint in the database: checking it costs about a quarter of a COPY
    # batch (measured, docs/benchmarks.md), and the only writer is the worker that owns the
    # RUNNING task. Its own index is left out too: (task, seq) unique leads with task_id.
    # Deleting a task still deletes its lines (Django's cascade, and
    # cleanup_tasks deletes lines before tasks).
    task = models.ForeignKey(
        Task, on_delete=models.CASCADE, related_name="logs", db_constraint=False, db_index=False
    )
    seq = models.PositiveIntegerField()
    timestamp = models.DateTimeField()
    level = models.PositiveSmallIntegerField(choices=LogLevel.choices, default=LogLevel.INFO)
    source = models.CharField(max_length=100, default="plugin")
    message = models.TextField()
    metadata = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["task", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["task", "seq"], name="tasklog_unique_seq"),
            models.CheckConstraint(
                condition=models.Q(level__in=LogLevel.values), name="tasklog_level_valid"
            ),
        ]
        indexes = [
            # (task, seq) is served by the unique constraint's index.
            models.Index(fields=["task", "level", "seq"], name="tasklog_task_level_idx"),
            models.Index(fields=["task", "source", "seq"], name="tasklog_task_source_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id}#{self.seq}"

    @property
    def level_name(self) -> str:
        return LogLevel(self.level).label

    @classmethod
    def clean_message(cls, message: str) -> str:
        """Strip NUL bytes (PostgreSQL text cannot hold them) and cap the length with a
        visible marker saying how much was dropped."""
        message = message.replace("\x00", "")
        if len(message) > cls.MESSAGE_LIMIT:
            dropped = len(message) - cls.MESSAGE_LIMIT
            message = message[: cls.MESSAGE_LIMIT] + cls.TRUNCATION_MARKER.format(dropped=dropped)
        return message

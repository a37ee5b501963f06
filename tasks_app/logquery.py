"""Reading a run's log: filters shared by the JSON API, the download and the live socket.

`LogFilter.parse(...)` turns query-string values into a filter or raises `LogFilterInvalid`
with per-field messages; the same filter narrows a queryset (`apply`) and a live line
(`matches`), so the page, the API and the socket always agree on what a filter means.

Which index serves what (TaskLog indexes: (task, seq) unique, (task, level, seq),
(task, source, seq); on PostgreSQL also a pg_trgm GIN index on upper(message), migration
0003):
- no filter, `after_seq`: a range scan of (task, seq), in seq order; `total` comes from the
  Task's counter;
- `level`/`min_level`: (task, level, seq) — an ERROR-only view of a million lines reads only
  the error rows;
- `source`: (task, source, seq);
- `search`: on PostgreSQL the trigram index finds the candidate rows (combined with the
  filters above); on SQLite it is a scan of the run's rows.
Figures for a million-line run are in docs/benchmarks.md ("Log queries").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import connection
from django.db.models import Count, Q, QuerySet

from tasks_app.models import LogLevel, Task, TaskLog

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_SEARCH_LENGTH = 200
MAX_SOURCES = 20
DOWNLOAD_CHUNK = 2000


class LogFilterInvalid(ValueError):
    """Bad filter input; `errors` maps each field to readable messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


def _level_names() -> str:
    return ", ".join(LogLevel.labels)


def _parse_level(raw: str) -> LogLevel:
    raw = raw.strip()
    if raw.lstrip("-").isdigit():
        number = int(raw)
        if number in LogLevel.values:
            return LogLevel(number)
        raise ValueError(f"unknown log level {raw!r}")
    return LogLevel.from_name(raw)


@dataclass(frozen=True)
class LogFilter:
    levels: frozenset[int] = field(default_factory=frozenset)
    min_level: int | None = None
    sources: frozenset[str] = field(default_factory=frozenset)
    search: str = ""

    @classmethod
    def parse(
        cls,
        *,
        level: str | None = None,
        min_level: str | None = None,
        source: str | None = None,
        search: str | None = None,
    ) -> LogFilter:
        """Parse query-string values (all optional). `level` and `source` are comma lists;
        levels are names (case-insensitive; WARN/CRITICAL fold in) or their numbers."""
        errors: dict[str, list[str]] = {}
        levels: set[int] = set()
        for part in (level or "").split(","):
            if not part.strip():
                continue
            try:
                levels.add(int(_parse_level(part)))
            except ValueError:
                errors.setdefault("level", []).append(
                    f"unknown level {part.strip()!r}; use one or more of {_level_names()}"
                )
        minimum: int | None = None
        if min_level not in (None, ""):
            try:
                minimum = int(_parse_level(min_level))
            except ValueError:
                errors["min_level"] = [
                    f"unknown level {min_level.strip()!r}; use one of {_level_names()}"
                ]
        sources = {s.strip() for s in (source or "").split(",") if s.strip()}
        if len(sources) > MAX_SOURCES:
            errors["source"] = [f"at most {MAX_SOURCES} sources at once"]
        elif any(len(s) > 100 for s in sources):
            errors["source"] = ["a source name is at most 100 characters"]
        text = (search or "").strip()
        if len(text) > MAX_SEARCH_LENGTH:
            errors["search"] = [f"at most {MAX_SEARCH_LENGTH} characters"]
        if "\x00" in text:
            errors["search"] = ["must not contain NUL characters"]
        if errors:
            raise LogFilterInvalid(errors)
        return cls(
            levels=frozenset(levels), min_level=minimum, sources=frozenset(sources), search=text
        )

    @property
    def is_empty(self) -> bool:
        return not (self.levels or self.min_level or self.sources or self.search)

    def _effective_levels(self) -> frozenset[int] | None:
        """The level set to filter on, or None for all levels. `level` and `min_level`
        together mean both must hold."""
        allowed = set(LogLevel.values)
        if self.levels:
            allowed &= self.levels
        if self.min_level is not None:
            allowed = {lv for lv in allowed if lv >= self.min_level}
        if allowed == set(LogLevel.values):
            return None
        return frozenset(allowed)

    def q(self) -> Q:
        query = Q()
        levels = self._effective_levels()
        if levels is not None:
            # An empty set (e.g. level=DEBUG&min_level=ERROR) matches nothing, as it should.
            query &= Q(level__in=sorted(levels))
        if self.sources:
            query &= Q(source__in=sorted(self.sources))
        if self.search:
            query &= Q(message__icontains=self.search)
        return query

    def apply(self, queryset: QuerySet[TaskLog]) -> QuerySet[TaskLog]:
        return queryset.filter(self.q())

    def matches(self, line: dict) -> bool:
        """Does a published line (level as a name, see realtime.py) pass this filter?"""
        levels = self._effective_levels()
        if levels is not None:
            try:
                number = int(_parse_level(str(line.get("level", ""))))
            except ValueError:
                return False
            if number not in levels:
                return False
        if self.sources and line.get("source") not in self.sources:
            return False
        if self.search:
            return self.search.casefold() in str(line.get("message", "")).casefold()
        return True

    def as_query(self) -> dict[str, str]:
        """The filter as query-string values (for links such as 'download these lines')."""
        out: dict[str, str] = {}
        if self.levels:
            out["level"] = ",".join(LogLevel(lv).label for lv in sorted(self.levels))
        if self.min_level is not None:
            out["min_level"] = LogLevel(self.min_level).label
        if self.sources:
            out["source"] = ",".join(sorted(self.sources))
        if self.search:
            out["search"] = self.search
        return out


# --- rows as the API and the socket send them -------------------------------------------------

LINE_FIELDS = ("seq", "timestamp", "level", "source", "message", "metadata")


def line_dict(row: dict) -> dict:
    """A TaskLog `values()` row in the published shape (level by name, ISO timestamp)."""
    return {
        "seq": row["seq"],
        "timestamp": row["timestamp"].isoformat(timespec="milliseconds"),
        "level": LogLevel(row["level"]).label,
        "source": row["source"],
        "message": row["message"],
        "metadata": row["metadata"],
    }


def log_lines(
    task: Task,
    log_filter: LogFilter,
    *,
    after_seq: int = 0,
    offset: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> tuple[int, list[dict]]:
    """(total matching, one page of lines in seq order). Two queries: a COUNT and a page
    ordered by seq, both on the index the filter picks (see the module docstring)."""
    qs = log_filter.apply(TaskLog.objects.filter(task=task, seq__gt=after_seq))
    if log_filter.is_empty and after_seq == 0:
        total = Task.objects.filter(pk=task.pk).values_list("log_total", flat=True).first() or 0
    else:
        total = qs.count()
    rows = qs.order_by("seq").values(*LINE_FIELDS)[offset : offset + limit]
    return total, [line_dict(r) for r in rows]


def iter_log_lines(
    task_id,
    log_filter: LogFilter,
    *,
    after_seq: int = 0,
    upto_seq: int | None = None,
    chunk: int = DOWNLOAD_CHUNK,
) -> Iterator[list[dict]]:
    """Chunks of matching lines with after_seq < seq ≤ upto_seq, in seq order. Keyset paging
    on seq: each chunk is one indexed query; memory stays one chunk however long the log."""
    last = after_seq
    while True:
        qs = log_filter.apply(TaskLog.objects.filter(task_id=task_id, seq__gt=last))
        if upto_seq is not None:
            qs = qs.filter(seq__lte=upto_seq)
        rows = list(qs.order_by("seq").values(*LINE_FIELDS)[:chunk])
        if not rows:
            return
        yield [line_dict(r) for r in rows]
        last = rows[-1]["seq"]
        if len(rows) < chunk:
            return


def format_text_line(line: dict) -> str:
    message = line["message"].replace("\r\n", "\n").replace("\n", "\n    ")
    return f"{line['timestamp']} {line['level']:<7} [{line['source']}] {message}\n"


def iter_log_text(task_id, log_filter: LogFilter) -> Iterator[str]:
    """The log as plain text, one string per chunk (for a StreamingHttpResponse)."""
    for lines in iter_log_lines(task_id, log_filter):
        yield "".join(format_text_line(line) for line in lines)


async def aiter_log_text(task_id, log_filter: LogFilter) -> AsyncIterator[str]:
    """`iter_log_text` for ASGI: each chunk's query runs in a worker thread."""
    last = 0
    while True:
        lines = await sync_to_async(_chunk_after)(task_id, log_filter, last)
        if not lines:
            return
        yield "".join(format_text_line(line) for line in lines)
        last = lines[-1]["seq"]
        if len(lines) < DOWNLOAD_CHUNK:
            return


def _chunk_after(task_id, log_filter: LogFilter, after_seq: int) -> list[dict]:
    return next(iter_log_lines(task_id, log_filter, after_seq=after_seq), [])


# --- stats ------------------------------------------------------------------------------------

SOURCE_COUNT_TABLE = "tasks_app_tasklog_source_count"


def source_counts(task: Task) -> dict[str, int]:
    """{source: lines} for a run, sorted by source.

    PostgreSQL: one primary-key range read of the table that statement triggers keep in step
    with every insert and delete of log lines (migration 0004): nothing is counted on read.
    SQLite (the embedded, small setup): a GROUP BY served by the (task, source, seq) index
    alone — a per-row trigger there halved the ingest rate (migration 0006)."""
    if connection.vendor == "sqlite":
        rows = (
            TaskLog.objects.filter(task_id=task.pk)
            .values_list("source")
            .annotate(lines=Count("*"))
            .order_by()
        )
        return dict(sorted((source, int(lines)) for source, lines in rows))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT source, lines FROM {SOURCE_COUNT_TABLE} WHERE task_id = %s AND lines > 0",
            [task.pk],
        )
        return dict(sorted((source, int(lines)) for source, lines in cursor.fetchall()))


def log_stats(task: Task) -> dict:
    """Totals by level from the counters the writer keeps on the Task (no counting on
    read), and by source from `source_counts` (kept by triggers). Two small indexed reads."""
    by_level = {
        "DEBUG": task.log_debug,
        "INFO": task.log_info,
        "WARNING": task.log_warning,
        "ERROR": task.log_error,
    }
    return {"total": task.log_total, "by_level": by_level, "by_source": source_counts(task)}

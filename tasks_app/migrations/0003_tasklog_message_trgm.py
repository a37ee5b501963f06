"""A trigram index for the log search (`?search=`), on PostgreSQL only.

`message__icontains` is `UPPER(message) LIKE UPPER('%text%')`; a GIN index over
`upper(message) gin_trgm_ops` serves that pattern, and PostgreSQL combines it with the
(task, level, seq) index (BitmapAnd) for `search` + `level`. SQLite has no such index type:
there the search is a scan of the run's rows (fine at SQLite's scale). Needs the pg_trgm
extension (a trusted extension since PostgreSQL 13: the database owner may create it).
"""

from django.db import migrations

INDEX = "tasklog_message_trgm"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON tasks_app_tasklog "
        "USING gin (upper(message) gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("tasks_app", "0002_task_schedule")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]

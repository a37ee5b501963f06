"""Per-run line counts by source, kept as the lines are written (for `logs/stats` and
`logs/sources`, which must not count a million rows on read).

A small table `tasks_app_tasklog_source_count (task_id, source, lines)` kept in step by
database triggers on `tasks_app_tasklog`, so every writer — the worker's COPY batches, the
SQLite multi-row insert, the cleanup's deletes — keeps it right without knowing about it:
- PostgreSQL: statement-level triggers with transition tables, one grouped upsert per
  INSERT/COPY batch (not per row) and one grouped update per DELETE;
- SQLite: row-level triggers (an upsert per row; SQLite is the small, embedded setup).
A row that falls to 0 lines is removed. No foreign key on purpose: Django's flush truncates
its own tables without CASCADE. Read by `tasks_app.logquery.source_counts`.
"""

from django.db import migrations

TABLE = "tasks_app_tasklog_source_count"

POSTGRES = [
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        task_id uuid NOT NULL,
        source varchar(100) NOT NULL,
        lines bigint NOT NULL,
        PRIMARY KEY (task_id, source))""",
    f"""CREATE OR REPLACE FUNCTION tasklog_source_count_ins() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {TABLE} AS c (task_id, source, lines)
        SELECT task_id, source, count(*) FROM new_rows GROUP BY task_id, source
        ON CONFLICT (task_id, source) DO UPDATE SET lines = c.lines + EXCLUDED.lines;
        RETURN NULL;
    END $$""",
    f"""CREATE OR REPLACE FUNCTION tasklog_source_count_del() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE {TABLE} AS c SET lines = c.lines - d.n
        FROM (SELECT task_id, source, count(*) AS n FROM old_rows GROUP BY task_id, source) d
        WHERE c.task_id = d.task_id AND c.source = d.source;
        DELETE FROM {TABLE} AS c USING (SELECT DISTINCT task_id FROM old_rows) d
        WHERE c.task_id = d.task_id AND c.lines <= 0;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER tasklog_source_count_ins AFTER INSERT ON tasks_app_tasklog
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION tasklog_source_count_ins()""",
    """CREATE TRIGGER tasklog_source_count_del AFTER DELETE ON tasks_app_tasklog
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION tasklog_source_count_del()""",
    f"""INSERT INTO {TABLE} (task_id, source, lines)
    SELECT task_id, source, count(*) FROM tasks_app_tasklog GROUP BY task_id, source
    ON CONFLICT DO NOTHING""",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS tasklog_source_count_ins ON tasks_app_tasklog",
    "DROP TRIGGER IF EXISTS tasklog_source_count_del ON tasks_app_tasklog",
    "DROP FUNCTION IF EXISTS tasklog_source_count_ins()",
    "DROP FUNCTION IF EXISTS tasklog_source_count_del()",
    f"DROP TABLE IF EXISTS {TABLE}",
]

SQLITE = [
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        task_id char(32) NOT NULL,
        source varchar(100) NOT NULL,
        lines integer NOT NULL,
        PRIMARY KEY (task_id, source))""",
    f"""CREATE TRIGGER IF NOT EXISTS tasklog_source_count_ins AFTER INSERT ON tasks_app_tasklog
    BEGIN
        INSERT INTO {TABLE} (task_id, source, lines) VALUES (NEW.task_id, NEW.source, 1)
        ON CONFLICT (task_id, source) DO UPDATE SET lines = lines + 1;
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS tasklog_source_count_del AFTER DELETE ON tasks_app_tasklog
    BEGIN
        UPDATE {TABLE} SET lines = lines - 1
        WHERE task_id = OLD.task_id AND source = OLD.source;
        DELETE FROM {TABLE} WHERE task_id = OLD.task_id AND source = OLD.source AND lines <= 0;
    END""",
    f"""INSERT OR IGNORE INTO {TABLE} (task_id, source, lines)
    SELECT task_id, source, count(*) FROM tasks_app_tasklog GROUP BY task_id, source""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS tasklog_source_count_ins",
    "DROP TRIGGER IF EXISTS tasklog_source_count_del",
    f"DROP TABLE IF EXISTS {TABLE}",
]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in POSTGRES if vendor == "postgresql" else SQLITE if vendor == "sqlite" else []:
        schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in POSTGRES_DROP if vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("tasks_app", "0003_tasklog_message_trgm")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tasks_app.management.commands.run_plugin import parse_param
from tasks_app.models import Task, TaskStatus

SCHEMA = {
    "type": "object",
    "properties": {
        "source": {"type": "string"},
        "keep": {"type": "integer", "default": 5},
        "ratio": {"type": "number"},
        "dry": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["source"],
    "additionalProperties": False,
}
BACKUP = """
def run(context, source: str, keep: int = 5, ratio: float = 1.0, dry: bool = False, tags=None):
    context.log.info("archiving %s", source)
    context.log.warning("keeping %d", keep)
    return {"source": source, "keep": keep, "dry": dry, "tags": tags}
"""


def follow(*args) -> tuple[int, str]:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("run_plugin", *args, "--follow", stdout=out)
    return exited.value.code, out.getvalue()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_follow_streams_the_lines_and_exits_0_on_success(make_plugin, celery_worker_process):
    make_plugin("backup", BACKUP, schema=SCHEMA)
    code, out = follow("backup", "--param", "source=/srv/data", "--param", "keep=3",
                       "--param", "dry=true", "--param", 'tags=["a","b"]')  # fmt: skip
    assert code == 0
    assert "[plugin] archiving /srv/data" in out
    assert "WARNING [plugin] keeping 3" in out
    assert out.rstrip().endswith("SUCCESS")
    task = Task.objects.get()
    assert task.result == {"source": "/srv/data", "keep": 3, "dry": True, "tags": ["a", "b"]}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_follow_exits_1_when_the_plugin_raises_and_its_traceback_is_stored(
    make_plugin, celery_worker_process
):
    make_plugin("boom", "def run(context):\n    raise RuntimeError('no disk')\n")
    code, out = follow("boom")
    assert code == 1
    assert "FAILED: RuntimeError: no disk" in out
    task = Task.objects.get()
    assert task.status == TaskStatus.FAILED
    assert "RuntimeError: no disk" in task.traceback


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "keep=3"], "source: This field is required."),
        (["--param", "source=/x", "--param", "keep=lots"], "keep: 'lots' is not a valid integer"),
        (["--param", "source=/x", "--param", "colour=red"], "colour: Unknown parameter."),
        (["--param", "source"], "expected key=value"),
        (["--params-json", "[1]"], "must be a JSON object"),
        (["--params-json", "{nope"], "not valid JSON"),
        (["--param", "source=/x", "--user", "nobody"], "unknown user 'nobody'"),
    ],
)
def test_wrong_input_is_refused_before_anything_is_queued(make_plugin, args, message):
    make_plugin("backup", BACKUP, schema=SCHEMA)
    with pytest.raises(CommandError, match=message) as caught:
        call_command("run_plugin", "backup", *args)
    assert caught.value.returncode == 2
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_an_unknown_or_inactive_plugin_is_refused(make_plugin):
    with pytest.raises(CommandError, match="unknown plugin 'nope'"):
        call_command("run_plugin", "nope")
    make_plugin("off", "def run():\n    pass\n", is_active=False)
    with pytest.raises(CommandError, match="not active"):
        call_command("run_plugin", "off")
    assert Task.objects.count() == 0


def test_param_values_are_typed_by_the_schema():
    schema = SCHEMA
    assert parse_param("keep=7", schema) == ("keep", 7)
    assert parse_param("ratio=0.5", schema) == ("ratio", 0.5)
    assert parse_param("dry=no", schema) == ("dry", False)
    assert parse_param("source=42", schema) == ("source", "42")
    assert parse_param("source=a=b", schema) == ("source", "a=b")
    assert parse_param("unknown=1", schema) == ("unknown", "1")

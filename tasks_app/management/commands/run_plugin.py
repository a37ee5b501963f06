"""`manage.py run_plugin ID --param key=value … [--params-json '{…}'] [--user NAME] [--follow]`

Queues a run of a plugin. Values given with `--param` are read according to the plugin's
schema: strings as typed, numbers / booleans / lists / objects as JSON (`--param keep=3`,
`--param tags='["a","b"]'`). Wrong params are refused before anything is queued, naming the
field (exit code 2). With `--follow` the log is printed as it is stored — the database is the
truth: new rows are polled by seq — coloured by level on a terminal; the exit code is then 0
on SUCCESS and 1 on FAILED / CANCELLED.
"""

from __future__ import annotations

import json
import sys
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from plugins_app.models import Plugin
from tasks_app.models import LogLevel, Task, TaskLog, TaskStatus
from tasks_app.services import ParamsInvalid, PluginNotRunnable, task_create

COLOURS = {10: "\033[2m", 20: "", 30: "\033[33m", 40: "\033[31m"}
RESET = "\033[0m"


def parse_param(raw: str, schema: dict) -> tuple[str, object]:
    """`key=value` → (key, value typed by the schema). Raises CommandError naming the key."""
    if "=" not in raw:
        raise CommandError(f"--param {raw!r}: expected key=value", returncode=2)
    key, text = raw.split("=", 1)
    key = key.strip()
    if not key:
        raise CommandError(f"--param {raw!r}: the key is empty", returncode=2)
    prop = (schema.get("properties") or {}).get(key) or {}
    kinds = prop.get("type")
    if kinds is None and "anyOf" in prop:
        kinds = [option.get("type") for option in prop["anyOf"] if isinstance(option, dict)]
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = [k for k in (kinds or []) if k]
    if not kinds or kinds == ["string"]:
        return key, text
    if "null" in kinds and text in {"", "null", "none", "None"}:
        return key, None
    lowered = text.lower()
    words = {"true", "false", "yes", "no", "on", "off"}
    # "1"/"0" are booleans only when the field cannot also be a number.
    if "boolean" in kinds and (lowered in words or (kinds == ["boolean"] and text in {"1", "0"})):
        return key, lowered in {"true", "yes", "on", "1"}
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        if "string" in kinds:
            return key, text
        raise CommandError(
            f"{key}: {text!r} is not a valid {' or '.join(kinds)} (write it as JSON)",
            returncode=2,
        ) from None


class Command(BaseCommand):
    help = "Queue a run of a plugin; with --follow, stream its log and exit 0 on SUCCESS."

    def add_arguments(self, parser):
        parser.add_argument("plugin_id")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--params-json", default=None, metavar="JSON")
        parser.add_argument("--user", default=None, help="username the run is recorded for")
        parser.add_argument("--follow", action="store_true")
        parser.add_argument("--poll", type=float, default=0.2, help=argparse_hidden())

    def handle(self, *args, **options):
        plugin = Plugin.objects.filter(pk=options["plugin_id"]).first()
        if plugin is None:
            raise CommandError(f"unknown plugin {options['plugin_id']!r}", returncode=2)
        params: dict = {}
        if options["params_json"]:
            try:
                params = json.loads(options["params_json"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--params-json: not valid JSON ({exc})", returncode=2)
            if not isinstance(params, dict):
                raise CommandError("--params-json: must be a JSON object", returncode=2)
        for raw in options["param"]:
            key, value = parse_param(raw, plugin.params_schema or {})
            params[key] = value
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"unknown user {options['user']!r}", returncode=2)
        try:
            task = task_create(plugin=plugin, params=params, user=user)
        except ParamsInvalid as exc:
            lines = [
                f"  {field or '(params)'}: {' '.join(msgs)}" for field, msgs in exc.errors.items()
            ]
            raise CommandError("invalid params:\n" + "\n".join(lines), returncode=2)
        except PluginNotRunnable as exc:
            raise CommandError(f"cannot run: {exc}", returncode=2)
        self.stdout.write(f"queued {plugin.pk} as task {task.pk}")
        if not options["follow"]:
            return
        status = self.follow(task, poll=options["poll"])
        sys.exit(0 if status == TaskStatus.SUCCESS else 1)

    def follow(self, task: Task, *, poll: float) -> str:
        """Print new lines until the task is final. The status is read before the lines:
        the final status is written only after the last line, so once it is seen, one more
        read gets everything."""
        colour = self.stdout.isatty()
        after = 0
        while True:
            status, error = Task.objects.filter(pk=task.pk).values_list("status", "error").get()
            while True:
                batch = list(
                    TaskLog.objects.filter(task_id=task.pk, seq__gt=after)
                    .order_by("seq")
                    .values_list("seq", "timestamp", "level", "source", "message")[:1000]
                )
                for seq, ts, level, source, message in batch:
                    text = f"{ts:%H:%M:%S} {LogLevel(level).label:<7} [{source}] {message}"
                    if colour and COLOURS.get(level):
                        text = f"{COLOURS[level]}{text}{RESET}"
                    self.stdout.write(text)
                    after = seq
                if len(batch) < 1000:
                    break
            if status in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED):
                suffix = f": {error}" if error and status != TaskStatus.SUCCESS else ""
                self.stdout.write(f"task {task.pk} {status}{suffix}")
                return status
            time.sleep(poll)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS

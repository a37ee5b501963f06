"""`manage.py discover_plugins [--watch] [--force]`: register the files in PLUGINS_FOLDER.

Once: prints the summary and exits 0 (1 if the folder is unusable). With `--watch` it runs one
pass, then rediscovers whenever a `.py` file under the folder changes (watchfiles: inotify, or
polling with WATCHFILES_FORCE_POLLING=1 on file systems without events), printing each summary,
until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from plugins_app.services import plugins_discover

# Changes are batched until the folder has been quiet for STEP_MS (an editor writes a file in
# several events), but never held longer than DEBOUNCE_MS: a save shows up well inside 2 s.
DEBOUNCE_MS = 800
STEP_MS = 100


def _is_plugin_change(change, path: str) -> bool:
    """A `.py` file, or something without a suffix (a folder moved in or out as a whole
    yields one event for the folder only). Dot-files are editor and rollback temporaries."""
    name = Path(path).name
    if name.startswith(".") or name == "__pycache__":
        return False
    return name.endswith(".py") or not Path(name).suffix


class Command(BaseCommand):
    help = "Discover plugin files in PLUGINS_FOLDER and register them (optionally keep watching)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--watch", action="store_true", help="keep watching the folder and rediscover"
        )
        parser.add_argument(
            "--force", action="store_true", help="re-parse unchanged files too (after upgrades)"
        )

    def handle(self, *args, watch: bool = False, force: bool = False, **options) -> None:
        folder = Path(settings.PLUGINS_FOLDER)
        if not folder.is_dir():
            raise CommandError(f"PLUGINS_FOLDER {str(folder)!r} is not an existing folder.")
        self._discover(force=force)
        if watch:
            self._watch(folder)

    def _discover(self, *, force: bool = False) -> None:
        result = plugins_discover(force=force)
        style = self.style.WARNING if result.errors else self.style.SUCCESS
        self.stdout.write(style(f"Plugins in {settings.PLUGINS_FOLDER}:\n{result.summary()}"))

    def _watch(self, folder: Path) -> None:
        from watchfiles import watch

        stop = threading.Event()

        def _stop(signum, frame) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        self.stdout.write(f"Watching {folder} for changes (Ctrl-C stops).")
        for changes in watch(
            folder,
            watch_filter=_is_plugin_change,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop,
            raise_interrupt=False,
        ):
            names = sorted({Path(p).relative_to(folder).as_posix() for _, p in changes})
            self.stdout.write(f"Changed: {', '.join(names)}")
            # A long-lived process: drop a connection the database may have closed meanwhile.
            close_old_connections()
            try:
                self._discover()
            except Exception as exc:  # keep watching through a database hiccup
                self.stderr.write(f"Discovery failed: {exc.__class__.__name__}: {exc}")
        self.stdout.write("Stopped watching.")

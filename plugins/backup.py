"""Archive a directory into a timestamped tar.gz and keep only the newest few.

Writes `<destination>/<name>-YYYYmmdd-HHMMSS.tar.gz` (or `.tar` without compression), then
deletes the oldest archives of the same name beyond `keep`. Symlinks are stored as links, not
followed. The archive is written under a temporary name and renamed when complete, so a
cancelled or failed run never leaves a half archive that retention would count.
"""

from __future__ import annotations

import os
import re
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Literal

__version__ = "1.0.0"
__author__ = "Octopus"
__title__ = "Directory backup"
TIMEOUT = 60 * 60


class Cancelled(Exception):
    pass


def run(
    context,
    source: str,
    destination: str = "/tmp/octopus-backups",
    keep: int = 5,
    compression: Literal["gz", "none"] = "gz",
) -> dict:
    """Back up `source` into `destination`.

    Args:
        source: the directory to archive.
        destination: the folder that receives the archives (created if absent).
        keep: how many archives of this directory to keep; older ones are deleted.
        compression: "gz" for a .tar.gz, "none" for a plain .tar.
    """
    src = Path(source).expanduser()
    if not src.is_dir():
        raise ValueError(f"source {source!r} is not a directory")
    if keep < 1:
        raise ValueError("keep must be at least 1")
    dest = Path(destination).expanduser()
    dest.mkdir(parents=True, exist_ok=True)

    files = _list_files(src)
    context.log.info("archiving %d files from %s", len(files), src)
    name = src.resolve().name or "root"
    suffix = ".tar.gz" if compression == "gz" else ".tar"
    # Microseconds keep two runs in the same second apart and the names in time order.
    archive = dest / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}{suffix}"
    partial = archive.with_name(archive.name + ".partial")
    try:
        size = _write_archive(context, src, files, partial, compression)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(archive)
    context.log.info("wrote %s (%d bytes)", archive, size)

    removed = _apply_retention(context, dest, name, suffix, keep)
    return {
        "archive": str(archive),
        "files": len(files),
        "bytes": size,
        "removed": [str(p) for p in removed],
    }


def _list_files(src: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        found.extend(Path(dirpath, f) for f in sorted(filenames))
    return found


def _write_archive(context, src: Path, files: list[Path], target: Path, compression: str) -> int:
    mode = "w:gz" if compression == "gz" else "w"
    with tarfile.open(target, mode) as tar:
        for index, path in enumerate(files, start=1):
            if context.cancelled:
                context.log.warning("cancelled after %d of %d files", index - 1, len(files))
                raise Cancelled("backup cancelled")
            try:
                tar.add(path, arcname=str(path.relative_to(src.parent)), recursive=False)
            except OSError as exc:  # a file vanished or is unreadable: note it, go on
                context.log.warning("skipped %s: %s", path, exc.strerror)
            if index % 100 == 0 or index == len(files):
                context.progress(index, total=len(files), message=f"{index} files")
    return target.stat().st_size


def _apply_retention(context, dest: Path, name: str, suffix: str, keep: int) -> list[Path]:
    # Match the exact pattern so `data-old`'s archives are not taken for `data`'s; the
    # timestamp in the name sorts in time order, so the oldest come first.
    pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}-\d{6}" + re.escape(suffix) + "$")
    archives = sorted(p for p in dest.iterdir() if pattern.match(p.name) and p.is_file())
    removed = archives[:-keep]
    for old in removed:
        old.unlink(missing_ok=True)
        context.log.info("removed old archive %s", old.name)
    return removed

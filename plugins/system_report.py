"""Report disk usage, memory and load average of the machine that runs it.

Reads /proc and statvfs (Linux; on other systems memory is reported as unknown), so it needs no
extra packages. Warns — and, with `fail_on_warning`, fails — when a disk is fuller than
`disk_warn_percent` or available memory drops below `memory_warn_percent`.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
from pathlib import Path

__version__ = "1.0.0"
__author__ = "Octopus"
__title__ = "System report"
TIMEOUT = 60


def run(
    context,
    paths: list[str] | None = None,
    disk_warn_percent: float = 90.0,
    memory_warn_percent: float = 10.0,
    fail_on_warning: bool = False,
) -> dict:
    """Collect the report.

    Args:
        paths: mount points or folders to measure; default: the root file system.
        disk_warn_percent: warn when a disk is used above this percentage.
        memory_warn_percent: warn when available memory is below this percentage.
        fail_on_warning: fail the run when any warning was raised.
    """
    paths = paths or ["/"]
    warnings: list[str] = []
    disks = []
    for index, path in enumerate(paths, start=1):
        if context.cancelled:
            context.log.warning("cancelled")
            break
        disk = _disk(path)
        disks.append(disk)
        if disk.get("error"):
            warnings.append(f"{path}: {disk['error']}")
        elif disk["used_percent"] > disk_warn_percent:
            warnings.append(f"{path} is {disk['used_percent']}% full")
        context.progress(index, total=len(paths) + 1, message=f"disk {path}")
    memory = _memory()
    available = memory.get("available_percent")
    if available is not None and available < memory_warn_percent:
        warnings.append(f"only {available}% of memory available")
    load = _load()
    for warning in warnings:
        context.log.warning(warning)
    context.log.info(
        "%s: load %s, memory available %s%%", socket.gethostname(), load, available or "?"
    )
    context.progress(len(paths) + 1, total=len(paths) + 1, message="done")
    if warnings and fail_on_warning:
        raise RuntimeError("; ".join(warnings))
    return {
        "host": socket.gethostname(),
        "system": f"{platform.system()} {platform.release()}",
        "cpus": os.cpu_count(),
        "load": load,
        "memory": memory,
        "disks": disks,
        "warnings": warnings,
    }


def _disk(path: str) -> dict:
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return {"path": path, "error": exc.strerror or str(exc)}
    return {
        "path": path,
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "used_percent": round(100 * usage.used / usage.total, 1) if usage.total else 0.0,
    }


def _memory() -> dict:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return {"available_percent": None}
    values = {}
    for line in meminfo.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024  # the kernel reports kB
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return {
        "total_bytes": total,
        "available_bytes": available,
        "available_percent": round(100 * available / total, 1) if total else None,
    }


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None

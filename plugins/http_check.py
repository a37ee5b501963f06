"""Check that a list of URLs answer with an expected HTTP status, in time.

Each URL is fetched once (GET, redirects followed) with a per-request timeout. The result lists
every URL with its status code, response time and verdict; the run fails when `fail_on_error`
is set and at least one URL is down, so a schedule can alert on it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

__version__ = "1.0.0"
__author__ = "Octopus"
__title__ = "HTTP health check"
TIMEOUT = 10 * 60


def run(
    context,
    urls: list[str],
    expected_status: int = 200,
    timeout_seconds: float = 10.0,
    fail_on_error: bool = True,
) -> dict:
    """Fetch every URL and compare its status code.

    Args:
        urls: the URLs to check (http:// or https://).
        expected_status: the status code that counts as healthy.
        timeout_seconds: how long to wait for each response.
        fail_on_error: fail the run when any URL is unhealthy.
    """
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise ValueError(f"not an http(s) URL: {', '.join(bad)}")
    checks = []
    for index, url in enumerate(urls, start=1):
        if context.cancelled:
            context.log.warning("cancelled after %d of %d URLs", index - 1, len(urls))
            break
        check = _check(url, expected_status, timeout_seconds)
        log = context.log.info if check["ok"] else context.log.error
        log("%s → %s in %.0f ms", url, check["status"] or check["error"], check["ms"])
        checks.append(check)
        context.progress(index, total=len(urls), message=url)
    down = [c["url"] for c in checks if not c["ok"]]
    result = {
        "checked": len(checks),
        "healthy": len(checks) - len(down),
        "down": down,
        "checks": checks,
    }
    if down and fail_on_error:
        raise RuntimeError(f"{len(down)} of {len(checks)} URLs unhealthy: {', '.join(down)}")
    return result


def _check(url: str, expected_status: int, timeout: float) -> dict:
    started = time.monotonic()
    status, error = None, None
    request = urllib.request.Request(url, headers={"User-Agent": "octopus-http-check/1.0"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # 4xx/5xx arrive as exceptions
        status = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        error = str(getattr(exc, "reason", exc))
    ms = (time.monotonic() - started) * 1000
    ok = status == expected_status
    return {"url": url, "status": status, "ms": round(ms, 1), "ok": ok, "error": error}

"""Live log latency: plugin log call → line received by a WebSocket client.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octopus REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m bench.live_latency [--seconds 5] [--flush-ms 500,100]

Starts the real pieces: a throwaway PostgreSQL database `octopus_bench_live` (dropped at the
end), a `celery worker` and a `daphne` server on a free port. A plugin logs
`t=<time.time()>` lines at a steady rate (100/s and 5,000/s); a `websockets` client following
the run's socket records, per line, receive time − the time in the line: p50/p95/max.
Both processes are on this machine, so they share the clock. The worker's batch interval
(`LOG_FLUSH_INTERVAL_MS`) is the main term: each value in --flush-ms is measured.

Baseline in the same run: a bare channel-layer round trip (group_send → receive on the same
Redis), the floor under any live frame.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._setup import p50_p95_max, pg_drop_after_django, pg_recreate, pg_urls

BASE_DIR = Path(__file__).resolve().parent.parent

BENCH_DB = "octopus_bench_live"
TARGET_P95_MS = 250.0

PLUGIN = """
import time


def run(context, rate: int = 100, seconds: float = 5.0, warmup: float = 1.5):
    time.sleep(warmup)  # lets the client connect before the first line
    total = int(rate * seconds)
    started = time.perf_counter()
    i = 0
    while i < total:
        for _ in range(max(1, rate // 200)):
            i += 1
            context.log.info("t=%.6f i=%d", time.time(), i)
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return total
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu(proc: subprocess.Popen) -> float:
    """CPU seconds used so far by a process and its children (psutil)."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        total = sum(root.cpu_times()[:2])
        for child in root.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0.0


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("daphne did not come up")


def _wait_worker(hostname: str, redis_url: str, proc: subprocess.Popen, timeout=30) -> None:
    import redis

    from octopus.celery import WORKER_KEY_PREFIX

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("worker exited early")
        if client.exists(WORKER_KEY_PREFIX + hostname):
            return
        time.sleep(0.1)
    raise RuntimeError("worker not ready")


async def _layer_round_trips(n: int = 500) -> list[float]:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("bench-latency", channel)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await layer.group_send("bench-latency", {"type": "bench", "i": i})
        await layer.receive(channel)
        samples.append((time.perf_counter() - started) * 1000)
    await layer.group_discard("bench-latency", channel)
    return samples


async def _follow_layer(task_id) -> list[float]:
    """Latency at the channel layer itself: log call → frame received from the run's group
    (the worker's part: buffer, batch, write, publish), without the consumer and socket."""
    from channels.layers import get_channel_layer

    from tasks_app.realtime import task_logs_group

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(task_logs_group(task_id), channel)
    latencies: list[float] = []
    while True:
        message = await layer.receive(channel)
        now = time.time()
        if message["type"] == "log.lines":
            for line in message["lines"]:
                if line["message"].startswith("t="):
                    latencies.append((now - float(line["message"].split()[0][2:])) * 1000)
        elif message["type"] == "task.status" and message["status"] not in ("PENDING", "RUNNING"):
            return latencies


async def _both(url: str, cookie: str, origin: str, task_id):
    return await asyncio.gather(_follow(url, cookie, origin), _follow_layer(task_id))


async def _follow(url: str, cookie: str, origin: str) -> tuple[list[float], int, str]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    last = 0
    async with connect(url, additional_headers={"Cookie": cookie}, origin=origin) as ws:
        async for raw in ws:
            now = time.time()
            event = json.loads(raw)
            if event["type"] == "lines":
                for line in event["lines"]:
                    if line["message"].startswith("t="):
                        sent = float(line["message"].split()[0][2:])
                        latencies.append((now - sent) * 1000)
                last = event["to_seq"]
            elif event["type"] == "status" and event["status"] not in ("PENDING", "RUNNING"):
                return latencies, last, event["status"]
    return latencies, last, "closed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="100,5000")
    parser.add_argument("--flush-ms", default="500,100", help="LOG_FLUSH_INTERVAL_MS values")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not base_url.startswith("postgres") or not redis_url:
        print("bench.live_latency needs DATABASE_URL=postgres://… and REDIS_URL=redis://…")
        return 2
    admin_url, bench_url = pg_urls(base_url, BENCH_DB)
    pg_recreate(admin_url, BENCH_DB)
    plugins = Path(tempfile.mkdtemp(prefix="octopus-bench-plugins-"))
    (plugins / "chatter.py").write_text(PLUGIN)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "PLUGINS_FOLDER": str(plugins),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only"),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "SECURE_SSL_REDIRECT": "false",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "octopus.settings")
    procs: list[subprocess.Popen] = []
    logs = BASE_DIR / "var"
    logs.mkdir(exist_ok=True)
    try:
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client

        from plugins_app.models import Plugin
        from tasks_app.models import Task
        from tasks_app.services import task_create

        call_command("migrate", verbosity=0)
        data = PLUGIN.encode()
        plugin = Plugin.objects.create(
            id="chatter", name="chatter", file_path="chatter.py", is_active=True,
            takes_context=True, sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data).hexdigest(), params_schema={"type": "object"},
        )  # fmt: skip
        user = get_user_model().objects.create_superuser("bench", password="bench-pass-123")
        client = Client()
        client.force_login(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}"

        port = _free_port()
        web = _start([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                    "octopus.asgi:application"], env, logs / "bench-live-daphne.log")  # fmt: skip
        procs.append(web)
        _wait_port(port)
        origin = f"http://127.0.0.1:{port}"

        baseline = asyncio.run(_layer_round_trips())
        rows = [("baseline: layer group_send→receive", "", len(baseline), baseline, "")]
        failed = False
        for flush_ms in [int(v) for v in args.flush_ms.split(",")]:
            hostname = f"bench-{flush_ms}@localhost"
            worker = _start(
                [sys.executable, "-m", "celery", "-A", "octopus", "worker", "-l", "warning",
                 "-n", hostname, "-c", "1", "--without-gossip", "--without-mingle"],
                {**env, "LOG_FLUSH_INTERVAL_MS": str(flush_ms)},
                logs / f"bench-live-worker-{flush_ms}.log",
            )  # fmt: skip
            procs.append(worker)
            _wait_worker(hostname, redis_url, worker)
            for rate in [int(v) for v in args.rates.split(",")]:
                cpu_before = _cpu(web)
                task = task_create(
                    plugin=plugin, params={"rate": rate, "seconds": args.seconds}, user=user
                )
                url = f"ws://127.0.0.1:{port}/ws/tasks/{task.pk}/logs/"
                (latencies, last, status), at_layer = asyncio.run(
                    _both(url, cookie, origin, task.pk)
                )
                task = Task.objects.get(pk=task.pk)
                expected = int(rate * args.seconds)
                ok = len(latencies) == expected and last == task.log_total
                p95 = p50_p95_max(latencies)[1] if latencies else float("inf")
                failed |= not ok or p95 > TARGET_P95_MS
                note = f"{status}, {len(latencies)}/{expected} lines" + ("" if ok else " LOST")
                note += f"; daphne CPU {_cpu(web) - cpu_before:.1f} s"
                rows.append((f"{rate} lines/s", f"{flush_ms} ms", len(latencies), latencies, note))
                rows.append(
                    ("  of which at the layer (worker part)", "", len(at_layer), at_layer, "")
                )
            _stop(worker)

        print(f"\n{'case':<36} {'flush':>7} {'lines':>7} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'max ms':>8}  note")  # fmt: skip
        for name, flush, count, samples, note in rows:
            p50, p95, worst = p50_p95_max(samples)
            verdict = ""
            if flush:
                verdict = "ok" if p95 <= TARGET_P95_MS else f"p95 > {TARGET_P95_MS:.0f}"
            print(f"{name:<36} {flush:>7} {count:>7} {p50:8.1f} {p95:8.1f} {worst:8.1f}  "
                  f"{verdict} {note}")  # fmt: skip
        return 1 if failed else 0
    finally:
        for proc in reversed(procs):
            _stop(proc)
        pg_drop_after_django(admin_url, BENCH_DB)


if __name__ == "__main__":
    sys.exit(main())

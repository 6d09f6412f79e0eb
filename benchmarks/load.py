"""Bounded load and soak: many simulated annotators scrolling jobs on a running framesvc.

Usage (``make load DURATION=600 CONNECTIONS=64`` wraps the first form)::

    python benchmarks/load.py --spawn --connections 64 --duration 600 --report out.json
    python benchmarks/load.py --url http://127.0.0.1:8080 --user admin --password … \\
        --connections 64 --duration 600 [--pid <server pid>] [--setup] [--report out.json]

``--spawn`` starts ``framesvc serve`` itself (data and cache in a temporary directory,
removed afterwards unless ``--keep``) and implies ``--setup``.  ``--setup`` creates the
tasks the run needs with the real ``cvat-sdk``: a few H.264 video tasks and a few image
tasks with several jobs each; without it the run uses the annotation jobs the user can
already see.

Every simulated user (one per connection) repeats a *visit*: pick a job at random, then
``GET data/meta``, the job's chunks in order (``index`` 0..n, mostly compressed, now and
then original), a few random frames of the job, the job preview, ``GET annotations`` and,
with probability ``--put-ratio``, ``PUT annotations`` with a few rectangles.  There is no
think time: this is a stress figure, not a model of human pacing.

Reported (stdout, and as JSON with ``--report``): requests/s overall and per endpoint
kind, latency p50/p90/p99 per kind, bytes, errors by status (or exception), throughput
and errors per interval, and the server's RSS over time (``VmRSS`` of ``/proc/<pid>/
status``, the pid from ``--pid`` or the spawned server).  RSS growth is the median of the
samples in the last tenth of the run against the median of the samples in the tenth right
after ``--warmup`` seconds.  The exit status is 0 when the run had no errors and the RSS
growth (when measured) stayed below ``--max-rss-growth``, 1 otherwise.

Bounds: the run stops by itself after ``--duration`` seconds or ``--max-requests``
requests, whichever comes first; every request has a timeout (``--request-timeout``); a
user still busy after that is cancelled.  Only ``127.0.0.1``/``localhost`` URLs are
accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_util as su

OK_STATUSES = frozenset({200, 201, 204, 206, 304})
KINDS = ("meta", "chunk", "frame", "preview", "annotations_get", "annotations_put")
#: Latencies kept per kind; beyond this, reservoir sampling keeps percentiles honest.
MAX_SAMPLES = 1_000_000


# --- what the users visit -----------------------------------------------------------------------


@dataclass
class Job:
    id: int
    start: int
    stop: int
    chunks: int
    labels: list[int]


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {(await response.text())[:300]}")
        return await response.json()


async def discover_jobs(session: aiohttp.ClientSession, base: str, *, task_ids: set[int] | None,
                        limit: int) -> list[Job]:
    """The annotation jobs to visit (of ``task_ids`` if given), with chunk counts and labels."""
    found: list[dict[str, Any]] = []
    url: str | None = f"{base}/api/jobs?page_size=100&sort=id"
    pages = 0
    while url and len(found) < limit and pages < 100:
        page = await _json(session, url)
        pages += 1
        for job in page["results"]:
            if job.get("type") == "annotation" and (task_ids is None or job["task_id"] in task_ids):
                found.append(job)
        url = page.get("next")
    jobs = []
    for job in found[:limit]:
        meta = await _json(session, f"{base}/api/jobs/{job['id']}/data/meta")
        labels = await _json(session, f"{base}/api/labels?job_id={job['id']}&page_size=100")
        chunks = max(1, math.ceil(int(meta["size"]) / int(meta["chunk_size"])))
        jobs.append(Job(int(job["id"]), int(job["start_frame"]), int(job["stop_frame"]), chunks,
                        [int(label["id"]) for label in labels["results"]]))
    return jobs


def setup_tasks(url: str, user: str, password: str, work: Path, *, videos: int,
                image_tasks: int) -> set[int]:
    """Create the run's tasks with the real cvat-sdk; returns their ids."""
    ids = set()
    for n in range(videos):
        path = su.write_video(work / f"load_video_{n}.mp4", frames=300, size=(640, 360))
        task = su.create_task(url, user, password, [path], name=f"load-video-{n}",
                              segment_size=100, image_quality=70)
        ids.add(task.id)
        print(f"setup: video task {task.id}, jobs {task.job_ids}", file=sys.stderr)
    for n in range(image_tasks):
        files = su.write_images(work / f"load_images_{n}", 60, (640, 480), grain=6.0,
                                prefix=f"img{n}")
        task = su.create_task(url, user, password, files, name=f"load-images-{n}",
                              segment_size=20, image_quality=70, chunk_size=10)
        ids.add(task.id)
        print(f"setup: image task {task.id}, jobs {task.job_ids}", file=sys.stderr)
    return ids


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seen: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    errors_by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    requests: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def record(self, kind: str, seconds: float, size: int, error: str | None) -> None:
        self.requests += 1
        self.seen[kind] += 1
        self.bytes[kind] += size
        if error is not None:
            self.errors[error] += 1
            self.errors_by_kind[kind][error] += 1
        samples = self.latencies[kind]
        if len(samples) < MAX_SAMPLES:
            samples.append(seconds)
        else:
            slot = self.rng.randrange(self.seen[kind])
            if slot < MAX_SAMPLES:
                samples[slot] = seconds


def read_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (``/proc/<pid>/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_rss_kib(pid: int) -> int | None:
    """``VmRSS`` of ``pid`` plus its child processes', in KiB (None once it is gone)."""
    total = 0
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids += [int(c) for c in children]
    except OSError:
        pass
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            if one == pid:
                return None
    return total


# --- the simulated users ------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, base: str, jobs: list[Job]) -> None:
        self.args = args
        self.base = base
        self.jobs = jobs
        self.stats = Stats()
        self.deadline = self.stats.started + args.duration
        self.stopping = asyncio.Event()

    def over(self) -> bool:
        if self.stopping.is_set():
            return True
        if time.monotonic() >= self.deadline or self.stats.requests >= self.args.max_requests:
            self.stopping.set()
            return True
        return False

    async def request(self, session: aiohttp.ClientSession, kind: str, method: str, path: str,
                      body: Any = None) -> bool:
        if self.over():
            return False
        started = time.perf_counter()
        size = 0
        error: str | None = None
        try:
            async with session.request(method, self.base + path, json=body) as response:
                async for block in response.content.iter_chunked(256 * 1024):
                    size += len(block)
                if response.status not in OK_STATUSES:
                    error = str(response.status)
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        self.stats.record(kind, time.perf_counter() - started, size, error)
        return error is None

    async def visit(self, session: aiohttp.ClientSession, rng: random.Random) -> None:
        job = rng.choice(self.jobs)
        data = f"/api/jobs/{job.id}/data"
        await self.request(session, "meta", "GET", f"{data}/meta")
        for index in range(min(job.chunks, self.args.max_chunks_per_visit)):
            quality = "original" if rng.random() < self.args.original_ratio else "compressed"
            await self.request(session, "chunk", "GET",
                               f"{data}?type=chunk&index={index}&quality={quality}")
        for _ in range(self.args.frames_per_visit):
            number = rng.randint(job.start, job.stop)
            quality = "original" if rng.random() < self.args.original_ratio else "compressed"
            await self.request(session, "frame", "GET",
                               f"{data}?type=frame&number={number}&quality={quality}")
        await self.request(session, "preview", "GET", f"/api/jobs/{job.id}/preview")
        if self.args.no_annotations:
            return
        await self.request(session, "annotations_get", "GET", f"/api/jobs/{job.id}/annotations/")
        if job.labels and rng.random() < self.args.put_ratio:
            await self.request(session, "annotations_put", "PUT",
                               f"/api/jobs/{job.id}/annotations/", annotations(job, rng))

    async def user(self, session: aiohttp.ClientSession, seed: int) -> None:
        rng = random.Random(seed)
        while not self.over():
            await self.visit(session, rng)

    async def sample(self, pid: int | None, timeline: list[dict[str, Any]]) -> None:
        """Every ``--interval`` seconds: requests, errors and RSS since the last sample."""
        last_requests, last_errors, last_t = 0, 0, 0.0
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.args.interval)
            now = time.monotonic() - self.stats.started
            errors = sum(self.stats.errors.values())
            point = {
                "t": round(now, 1),
                "requests": self.stats.requests - last_requests,
                "errors": errors - last_errors,
                "rss_kib": read_rss_kib(pid) if pid else None,
                "server_cpu_s": read_cpu_seconds(pid) if pid else None,
                "client_cpu_s": round(sum(os.times()[:2]), 2),
            }
            rate = point["requests"] / max(now - last_t, 1e-3)
            last_requests, last_errors, last_t = self.stats.requests, errors, now
            timeline.append(point)
            rss = f" rss={point['rss_kib'] / 1024:.0f}MiB" if point["rss_kib"] else ""
            print(f"[{now:6.0f}s] {rate:7.1f} req/s "
                  f"errors={point['errors']}{rss}", file=sys.stderr, flush=True)


def annotations(job: Job, rng: random.Random) -> dict[str, Any]:
    """A small LabeledData: a few rectangles on random frames of the job."""
    shapes = []
    for _ in range(rng.randint(1, 5)):
        x, y = rng.uniform(0, 200), rng.uniform(0, 200)
        shapes.append({
            "type": "rectangle", "frame": rng.randint(job.start, job.stop),
            "label_id": rng.choice(job.labels), "points": [x, y, x + 40.0, y + 30.0],
            "occluded": False, "outside": False, "z_order": 0, "rotation": 0.0,
            "attributes": [], "group": 0, "source": "manual",
        })
    return {"version": 0, "tags": [], "shapes": shapes, "tracks": []}


# --- report -------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0}
    p50, p90, p99 = np.percentile(np.asarray(samples) * 1000, [50, 90, 99])
    return {"p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2),
            "p99_ms": round(float(p99), 2)}


def rss_summary(timeline: list[dict[str, Any]], duration: float, warmup: float) -> dict[str, Any]:
    points = [(p["t"], p["rss_kib"]) for p in timeline if p["rss_kib"]]
    if not points:
        return {"measured": False}
    window = max(duration / 10, 1.0)
    after_warmup = [r for t, r in points if warmup <= t <= warmup + window] or [points[0][1]]
    last = [r for t, r in points if t >= duration - window] or [points[-1][1]]
    baseline, final = statistics.median(after_warmup), statistics.median(last)
    return {
        "measured": True,
        "start_kib": points[0][1],
        "after_warmup_kib": baseline,
        "final_kib": final,
        "max_kib": max(r for _, r in points),
        "growth_after_warmup": round(final / baseline - 1, 4),
    }


def cpu_summary(timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU seconds used during the run by the server and by this client (same machine)."""
    if len(timeline) < 2:
        return {}
    first, last = timeline[0], timeline[-1]
    span = last["t"] - first["t"] or 1e-9
    out: dict[str, Any] = {"cores": os.cpu_count()}
    for who in ("server", "client"):
        a, b = first.get(f"{who}_cpu_s"), last.get(f"{who}_cpu_s")
        if a is not None and b is not None:
            out[f"{who}_cores_busy"] = round((b - a) / span, 2)
    return out


def build_report(run: Run, elapsed: float, timeline: list[dict[str, Any]],
                 config: dict[str, Any]) -> dict[str, Any]:
    stats = run.stats
    kinds = {}
    for kind in KINDS:
        if stats.seen[kind]:
            kinds[kind] = {
                "requests": stats.seen[kind],
                "requests_per_s": round(stats.seen[kind] / elapsed, 1),
                "bytes": stats.bytes[kind],
                "errors": dict(stats.errors_by_kind[kind]),
                **percentiles(stats.latencies[kind]),
            }
    return {
        "config": config,
        "elapsed_s": round(elapsed, 1),
        "requests": stats.requests,
        "requests_per_s": round(stats.requests / elapsed, 1),
        "megabytes_per_s": round(sum(stats.bytes.values()) / elapsed / 1e6, 1),
        "errors": dict(stats.errors),
        "kinds": kinds,
        "rss": rss_summary(timeline, elapsed, config["warmup"]),
        "cpu": cpu_summary(timeline),
        "timeline": timeline,
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['requests']} requests in {report['elapsed_s']} s: "
          f"{report['requests_per_s']} req/s, {report['megabytes_per_s']} MB/s, "
          f"errors {report['errors'] or 'none'}")
    print(f"{'kind':<16}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"  errors")
    for kind, k in report["kinds"].items():
        print(f"{kind:<16}{k['requests']:>9}{k['requests_per_s']:>9}{k['p50_ms']:>9}"
              f"{k['p90_ms']:>9}{k['p99_ms']:>9}  {k['errors'] or '-'}")
    rss = report["rss"]
    if rss["measured"]:
        print(f"RSS: start {rss['start_kib'] / 1024:.0f} MiB, after warm-up "
              f"{rss['after_warmup_kib'] / 1024:.0f} MiB, end {rss['final_kib'] / 1024:.0f} MiB, "
              f"max {rss['max_kib'] / 1024:.0f} MiB, growth after warm-up "
              f"{rss['growth_after_warmup']:+.1%}")
    cpu = report.get("cpu") or {}
    if "client_cores_busy" in cpu:
        print(f"CPU: server {cpu.get('server_cores_busy', '?')} cores busy, this client "
              f"{cpu['client_cores_busy']} (of {cpu['cores']} on the machine)")


# --- main ---------------------------------------------------------------------------------------


def local_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"load.py only talks to a local server (http://127.0.0.1:…): {url}")
    return url.rstrip("/")


async def run_load(args: argparse.Namespace, base: str, token: str, pid: int | None,
                   task_ids: set[int] | None) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    connector = aiohttp.TCPConnector(limit=args.connections)
    headers = {"Authorization": f"Token {token}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers=headers) as session:
        jobs = await discover_jobs(session, base, task_ids=task_ids, limit=args.max_jobs)
        if not jobs:
            raise SystemExit("no annotation jobs to visit: run with --setup (or --spawn)")
        print(f"load: {len(jobs)} jobs, {args.connections} users, {args.duration:g} s",
              file=sys.stderr)
        run = Run(args, base, jobs)
        timeline: list[dict[str, Any]] = []
        sampler = asyncio.create_task(run.sample(pid, timeline))
        users = [asyncio.create_task(run.user(session, args.seed + n))
                 for n in range(args.connections)]
        # Users stop at the deadline; one still inside a request gets its timeout, then
        # a little more, before it is cancelled.
        _, pending = await asyncio.wait(users,
                                        timeout=args.duration + args.request_timeout + 5)
        run.stopping.set()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in users:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await sampler
        elapsed = min(time.monotonic() - run.stats.started, args.duration) or 1e-9
        config = {k: v for k, v in vars(args).items() if k not in ("password",)}
        config.update(jobs=len(jobs), url=base)
        return build_report(run, elapsed, timeline, config)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--user", default=su.ADMIN_USER)
    p.add_argument("--password", default=su.ADMIN_PASSWORD)
    p.add_argument("--pid", type=int, help="server pid whose RSS is sampled")
    p.add_argument("--spawn", action="store_true",
                   help="start framesvc in a temp dir (implies --setup)")
    p.add_argument("--keep", action="store_true", help="keep the --spawn temp dir")
    p.add_argument("--setup", action="store_true", help="create video and image tasks first")
    p.add_argument("--setup-videos", type=int, default=2)
    p.add_argument("--setup-image-tasks", type=int, default=2)
    p.add_argument("--connections", type=int, default=64, help="simulated users")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--max-requests", type=int, default=10_000_000)
    p.add_argument("--request-timeout", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds before the RSS baseline (default: a fifth of the run, ≤ 120)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--max-jobs", type=int, default=50)
    p.add_argument("--max-chunks-per-visit", type=int, default=20)
    p.add_argument("--frames-per-visit", type=int, default=3)
    p.add_argument("--original-ratio", type=float, default=0.1)
    p.add_argument("--put-ratio", type=float, default=0.1)
    p.add_argument("--no-annotations", action="store_true")
    p.add_argument("--max-rss-growth", type=float, default=0.10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--report", type=Path, help="write the JSON report here")
    args = p.parse_args(argv)
    if not args.spawn and not args.url:
        p.error("give --url (a running server) or --spawn")
    if not 0 < args.duration <= 24 * 3600:
        p.error("--duration must be within (0, 86400] seconds")
    if not 0 < args.connections <= 4096:
        p.error("--connections must be within 1..4096")
    if args.warmup is None:
        args.warmup = min(args.duration / 5, 120.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="framesvc-load-"))
    server: su.Framesvc | None = None
    try:
        if args.spawn:
            server = su.start_framesvc(work / "server")
            args.url, args.user, args.password = server.url, server.user, server.password
            args.pid = args.pid or server.pid
            args.setup = True
            print(f"load: spawned framesvc pid {server.pid} at {server.url} (log "
                  f"{server.log_path})", file=sys.stderr)
        base = local_url(args.url)
        task_ids = None
        if args.setup:
            task_ids = setup_tasks(base, args.user, args.password, work / "media",
                                   videos=args.setup_videos, image_tasks=args.setup_image_tasks)
        token = su.login_token(base, args.user, args.password)
        report = asyncio.run(run_load(args, base, token, args.pid, task_ids))
        if server is not None and server.process.poll() is not None:
            report["errors"]["server_exited"] = 1
    finally:
        if server is not None:
            server.stop()
            log = server.log_path.read_text(errors="replace")
            problems = [line for line in log.splitlines()
                        if " ERROR " in line or "Traceback" in line]
            if problems:
                print(f"load: the server logged {len(problems)} errors; last lines:\n"
                      + su.tail(server.log_path, 30), file=sys.stderr)
        if args.keep:
            print(f"load: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_report(report)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, default=str))
    growth = report["rss"].get("growth_after_warmup")
    passed = not report["errors"] and (growth is None or growth < args.max_rss_growth)
    print("PASS" if passed else "FAIL", "(no errors" if not report["errors"] else "(errors",
          f"and RSS growth {growth:+.1%})" if growth is not None else ", RSS not measured)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Job", "Run", "Stats", "main", "read_rss_kib", "rss_summary"]

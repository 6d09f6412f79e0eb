"""``framesvc ingest PATH... --name N``: create a task from local files, without a server.

It writes straight to the store (the same database and data directory ``framesvc
serve`` uses) through the same :func:`framesvc.ingest.ingest` the HTTP upload runs,
copying the files into the task's media directory, and prints the task id and its jobs.
Useful to load large local datasets without pushing them through HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from framesvc.cli import add_store_options, command, settings_from_args
from framesvc.config import Settings

SORTING_METHODS = ("lexicographical", "natural", "predefined", "random")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="image/video files, one archive, or directories of images")
    parser.add_argument("--name", required=True, help="task name")
    parser.add_argument("--labels", default="[]",
                        help='labels as JSON, e.g. \'[{"name": "car"}]\' (default: none)')
    parser.add_argument("--segment-size", type=int, default=0,
                        help="frames per job (default 0: one job)")
    parser.add_argument("--overlap", type=int, default=None, help="frames shared by jobs")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="frames per chunk (default: CVAT's rule)")
    parser.add_argument("--image-quality", type=int, default=70,
                        help="compressed quality 1..100 (default 70)")
    parser.add_argument("--sorting-method", choices=SORTING_METHODS, default="lexicographical")
    parser.add_argument("--frame-step", type=int, default=None, help="take every N-th frame")
    parser.add_argument("--start-frame", type=int, default=None)
    parser.add_argument("--stop-frame", type=int, default=None)
    parser.add_argument("--use-zip-chunks", action="store_true",
                        help="zip (JPEG) compressed chunks for a video")
    parser.add_argument("--owner", default=None,
                        help="owner's username (default: the configured admin user, if any)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_store_options(parser)


def _label_inputs(raw: str) -> list[Any]:
    from framesvc.store.labels import AttributeInput, LabelInput

    specs = json.loads(raw)
    if not isinstance(specs, list):
        raise ValueError("--labels must be a JSON list of label objects")

    def label(spec: Any) -> LabelInput:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ValueError(f"Each label needs a name, got {spec!r}")
        attributes = [
            AttributeInput(
                name=a.get("name"),
                mutable=bool(a.get("mutable", False)),
                input_type=a.get("input_type", "text"),
                default_value=str(a.get("default_value", "")),
                values=[str(v) for v in a.get("values", [])],
            )
            for a in spec.get("attributes", [])
        ]
        return LabelInput(
            name=spec["name"],
            color=spec.get("color") or None,
            type=spec.get("type") or None,
            svg=spec.get("svg") or None,
            attributes=attributes,
            sublabels=[label(s) for s in spec.get("sublabels", [])],
        )

    return [label(s) for s in specs]


class _Bar:
    """Adapts ingest progress (fractions) to a tqdm bar in percent."""

    def __init__(self, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, unit="%", disable=quiet, file=sys.stderr,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}]")

    async def __call__(self, fraction: float, message: str = "") -> None:
        target = round(100 * fraction, 1)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)
        if message:
            self.bar.set_description_str(message, refresh=False)

    def close(self) -> None:
        self.bar.close()


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from framesvc.ingest import (
        IngestEnv,
        IngestError,
        IngestInput,
        InvalidParams,
        SourceFile,
        ingest,
        parse_data_params,
    )
    from framesvc.store.db import create_engine, migrate
    from framesvc.store.labels import LabelError, create_labels
    from framesvc.store.schema import users
    from framesvc.store.tasks import NewTask, delete_task, insert_task
    from framesvc.workers import WorkerPool

    raw: dict[str, Any] = {
        "image_quality": args.image_quality,
        "chunk_size": args.chunk_size,
        "start_frame": args.start_frame,
        "stop_frame": args.stop_frame,
        "sorting_method": args.sorting_method,
        "use_zip_chunks": args.use_zip_chunks,
    }
    if args.frame_step is not None:
        raw["frame_filter"] = f"step={args.frame_step}"
    try:
        params = parse_data_params(raw, segment_size=args.segment_size)
        labels = _label_inputs(args.labels)
    except (InvalidParams, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.segment_size < 0 or (args.overlap is not None and args.overlap < 0):
        print("error: --segment-size and --overlap must not be negative", file=sys.stderr)
        return 2
    files = []
    for path in args.paths:
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
        files.append(SourceFile(path.resolve().name, path.resolve()))

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate, settings.effective_database_url)
    engine = create_engine(settings.effective_database_url)
    pool = WorkerPool(settings.workers)
    try:
        owner_name = args.owner or settings.admin_user or None
        async with engine.begin() as conn:
            owner_id = None
            if owner_name:
                owner_id = (
                    await conn.execute(sa.select(users.c.id).where(users.c.username == owner_name))
                ).scalar_one_or_none()
                if owner_id is None:
                    print(f"error: no user named {owner_name!r}", file=sys.stderr)
                    return 2
            task_id = await insert_task(
                conn,
                NewTask(name=args.name, owner_id=owner_id, overlap=args.overlap,
                        segment_size=args.segment_size),
            )
            try:
                await create_labels(conn, task_id, labels)
            except LabelError as exc:
                raise _Abort(str(exc)) from exc
        env = IngestEnv(settings, engine, pool)
        bar = _Bar(args.quiet)
        try:
            result = await ingest(
                env,
                IngestInput(task_id=task_id, params=params, files=tuple(files), transfer="copy"),
                bar,
            )
        except (IngestError, InvalidParams) as exc:
            bar.close()
            async with engine.begin() as conn:
                await delete_task(conn, task_id)
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except BaseException:
            bar.close()
            async with engine.begin() as conn:
                await delete_task(conn, task_id)
            raise
        bar.close()
        print(f"task {result.task_id}: {args.name!r}, {result.size} frames, {result.mode} mode, "
              f"chunk size {result.chunk_size}")
        for job in result.jobs:
            print(f"job {job.id}: frames {job.start_frame}-{job.stop_frame} ({job.type})")
        return 0
    except _Abort as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        pool.shutdown()
        await engine.dispose()


class _Abort(Exception):
    pass


@command("ingest", _configure)
def run(args: argparse.Namespace) -> int:
    from framesvc.media.limits import configure_pillow

    settings = settings_from_args(args)
    configure_pillow(settings.max_image_pixels)  # as `serve` does: one pixel limit
    return asyncio.run(_run(args, settings))

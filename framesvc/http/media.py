"""The media endpoints of tasks and jobs: data (chunks, frames, previews, context images),
``data/meta`` (GET and PATCH) and ``preview`` (spec §2–6).

Task and job endpoints share one implementation; they differ only in how the scope is
loaded (``mediasvc.load_task_scope`` / ``load_job_scope``) and in the parameter rules.

Order of checks for ``GET …/data`` (as CVAT's view and ``_DataGetter``):

1. the task or job must be visible (404) — for writes, changeable (403);
2. ``Range`` syntax (400, plain text ``Invalid Range header``);
3. query parameters (400 with a JSON **list** body, e.g. ``["Wrong quality value"]``);
4. the task must have media (404 with the JSON **string** ``"Task has no media"``);
5. frame/chunk numbers against the task or job (400 with a JSON **string** body: CVAT's
   getter catches its provider's validation errors and renders them as a string).

Where we deliberately differ from CVAT (documented in the report and module docs):

* a ``number``/``index`` that is not an integer is a 400 (CVAT: 500);
* a job ``context_image`` without ``number`` is a 400 (CVAT: 500);
* a job chunk with a ``quality`` other than ``compressed``/``original`` is a 400
  ``["Wrong quality value"]`` like every other type, instead of silently serving the
  original quality;
* job chunk number/index errors are JSON strings like the task's (CVAT's job chunk
  branch lets them escape as DRF list bodies);
* a frame the task's own media cannot produce (a source damaged when uploaded or on
  disk since) is a 422 with a JSON string naming file and frame, never a 500, and is
  not cached (CVAT: 500);
* a build that takes longer than the cache's wait limit answers 503 with
  ``Retry-After`` (retried by the SDK), never CVAT's 429, which the SDK does not retry.

Media responses carry a strong ``ETag``, ``Last-Modified``, ``Cache-Control: private,
no-cache`` and honour ``Range``/``If-None-Match`` (see ``http/responses.py``); chunk
responses add CVAT's ``X-Checksum`` and ``X-Updated-Date``.  ``request["cache"]`` is set
to ``hit``/``miss``/``shared`` for the access log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.access import get_job_for, get_task_for
from framesvc.app import SERVICES, Services, services
from framesvc.cache import CacheTimeout, MediaCache
from framesvc.cache.items import Entry
from framesvc.cache.resolved import ResolvedCache
from framesvc.http.context import current_user, iso
from framesvc.http.errors import (
    JSON_CONTENT_TYPE,
    ApiError,
    bad_request,
    json_response,
    not_found,
)
from framesvc.http.microcache import OFFER, Memo
from framesvc.http.responses import (
    ByteRange,
    CachedFileResponse,
    MalformedRange,
    MemoryResponse,
    file_response,
    invalid_range_response,
    parse_range,
)
from framesvc.http.routing import int_param
from framesvc.http.serializers import Fields, Invalid, int_field, list_field, read_json
from framesvc.media.encode import VideoTooLargeError
from framesvc.media.errors import MediaError
from framesvc.mediasvc import (
    QUALITIES,
    Fetched,
    ItemSpec,
    MediaScope,
    MediaService,
    NoContextImages,
    NoMedia,
    chunk_spec,
    context_spec,
    deleted_frames_for_job,
    frame_spec,
    job_rel_frames,
    load_job_scope,
    load_task_scope,
    next_chunk_specs,
    preview_spec,
)
from framesvc.model.gt import format_list
from framesvc.openapi import models
from framesvc.openapi.operations import (
    MEDIA_NOT_FOUND,
    cvat_json,
    errors,
    media_responses,
    operation,
    preview_responses,
)
from framesvc.prefetch import Candidate, Prefetcher
from framesvc.store.db import utcnow
from framesvc.store.schema import data as data_table
from framesvc.store.schema import tasks
from framesvc.store.validation import replace_disabled_frames

log = logging.getLogger("framesvc.media")

#: Key of the :class:`MediaService` in ``Services.extras``.
MEDIA = "media"

DATA_TYPES = ("chunk", "frame", "preview", "context_image")
#: Seconds a client is told to wait when a build outlasted the cache's wait limit.
RETRY_AFTER = "10"
_INT = re.compile(r"\s*[+-]?\d+\s*")


def media_service(request: web.Request) -> MediaService:
    service: MediaService = services(request).extras[MEDIA]
    return service


# --- parameters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataParams:
    """The validated query of a data request (CVAT's ``_DataGetter`` constructor)."""

    type: str
    quality: str
    number: int | None
    index: int | None


def _integer(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if _INT.fullmatch(raw) is None:
        raise bad_request(f"{name} must be an integer")
    if len(raw.strip().lstrip("+-")) > 18:  # beyond any frame or chunk (and int64)
        raise bad_request(f"{name} is out of range")
    return int(raw)


def parse_data_params(query: Mapping[str, str], *, job: bool) -> DataParams:
    """Validate ``type``/``number``/``index``/``quality`` in CVAT's order and words."""
    type_ = query.get("type")
    number_raw = query.get("number")
    index_raw = query.get("index") if job else None
    quality = query.get("quality", "compressed")
    if not type_ or type_ not in DATA_TYPES:
        raise bad_request("Data type not specified or has wrong value")
    if type_ == "chunk" and job:
        if number_raw is None and index_raw is None:
            raise bad_request("Number or Index is not specified")
        if number_raw is not None and index_raw is not None:
            raise bad_request("Number and Index cannot be used together")
        if quality not in QUALITIES:
            raise bad_request("Wrong quality value")
    elif type_ in ("chunk", "frame", "preview"):
        if number_raw is None and type_ != "preview":
            raise bad_request("Number is not specified")
        if quality not in QUALITIES:
            raise bad_request("Wrong quality value")
    elif number_raw is None:  # context_image: CVAT fails later with a 500
        raise bad_request("Number is not specified")
    number = _integer(number_raw, "Number")
    index = _integer(index_raw, "Index") if type_ == "chunk" else None
    return DataParams(type_, quality, number, index)


#: The status of a frame that the task's own media cannot produce (see ``_fetch``).
UNDECODABLE = 422

#: A quoted absolute path inside a decoder's message (FFmpeg and Pillow quote the file).
_QUOTED_PATH = re.compile(r"""(['"])/(?:[^'"/]*/)*([^'"/]*)\1""")


def _no_paths(message: str) -> str:
    """``... input: '/srv/data/tasks/5/raw/a.mp4'`` -> ``... input: 'a.mp4'``: clients
    learn which file, never where the server keeps it."""
    return _QUOTED_PATH.sub(r"\1\2\1", message)


def provider_error(message: str, status: int = 400) -> ApiError:
    """CVAT's getter renders provider errors as a JSON *string*."""
    return ApiError(status, message)


# --- shared plumbing ------------------------------------------------------------------------


async def _fetch(request: web.Request, spec: ItemSpec, build: Any) -> Fetched:
    """Get or build, mapping failures to CVAT-shaped answers."""
    media = media_service(request)
    try:
        fetched = await media.fetch(spec, build)
    except CacheTimeout as exc:
        log.warning("media: %s", exc)
        raise ApiError(503, "The requested media is still being prepared, try again later",
                       headers={"Retry-After": RETRY_AFTER}) from exc
    except VideoTooLargeError as exc:
        raise provider_error(exc.reason) from exc
    except MediaError as exc:
        # A source that cannot be decoded (damaged when uploaded, or on disk since) is
        # a fact about this task's media, not a server fault: 422, naming file and frame.
        # Nothing was cached, so a repaired file is served by the very next request.
        log.warning("media: cannot build %s: %s", spec.key, exc)
        raise provider_error(f"The media cannot be read: {_no_paths(str(exc))}",
                             UNDECODABLE) from exc
    except OSError as exc:
        log.error("media: cannot build %s: %s", spec.key, exc)
        raise provider_error("The media files of the task cannot be read", 500) from exc
    request["cache"] = fetched.outcome
    return fetched


def _no_media(exc: NoMedia) -> ApiError:
    return ApiError(404, str(exc))


async def _task_scope(conn: AsyncConnection, task: Any) -> MediaScope:
    try:
        return await load_task_scope(conn, task)
    except NoMedia as exc:
        raise _no_media(exc) from exc


async def _job_scope(conn: AsyncConnection, job: Any) -> MediaScope:
    try:
        return await load_job_scope(conn, job)
    except NoMedia as exc:
        raise _no_media(exc) from exc


def _chunk_headers(scope: MediaScope, fetched: Fetched) -> dict[str, str]:
    extra = fetched.item.extra
    return {
        "X-Checksum": str(extra.get("checksum", "")),
        "X-Updated-Date": iso(scope.chunks_updated_date) or "",
    }


def _prefetch(request: web.Request, scope: MediaScope, params: DataParams) -> None:
    """Offer the job chunks after this one to the prefetcher (low priority)."""
    media = media_service(request)
    prefetcher: Prefetcher | None = media.prefetcher
    if prefetcher is None or not prefetcher.enabled or scope.segment is None:
        return
    try:
        specs = next_chunk_specs(scope, params.quality, number=params.number,
                                 index=params.index, count=prefetcher.depth)
    except ValueError:
        return
    engine = services(request).engine

    def prepare_for(spec: ItemSpec) -> Any:
        async def prepare() -> Any:
            async with engine.connect() as conn:
                return await media.prepare(conn, scope, spec)

        return prepare

    prefetcher.offer([Candidate(spec.key, prepare_for(spec)) for spec in specs])


# --- GET …/data -------------------------------------------------------------------------------


#: Entries of the per-application cache of resolved data requests (see ``_serve_data``).
RESOLVED_ENTRIES = 4096
_RESOLVED = "media.resolved"


def _resolved(request: web.Request) -> ResolvedCache[Any]:
    """What warm data requests resolved, valid while the store is unchanged.

    ``("scope", job, id, user id)`` -> the media scope, present only if that user passed
    the access check; ``("build", key)`` -> the item's build.  Both stay valid while the
    store generation is unchanged (any committed write - a reassignment, a meta PATCH -
    drops them all at once).  Disabled where other processes' writes cannot be seen at
    once (databases other than SQLite).
    """
    svc = services(request)
    cache: ResolvedCache[Any] | None = svc.extras.get(_RESOLVED)
    if cache is None:
        size = RESOLVED_ENTRIES if svc.generation.cross_process else 0
        cache = svc.extras[_RESOLVED] = ResolvedCache(svc.generation, size)
    return cache


def _data_spec(scope: MediaScope, params: DataParams) -> ItemSpec:
    try:
        if params.type == "chunk":
            return chunk_spec(scope, quality=params.quality, number=params.number,
                              index=params.index)
        if params.type == "frame":
            assert params.number is not None
            return frame_spec(scope, params.number, params.quality)
        if params.type == "context_image":
            assert params.number is not None
            return context_spec(scope, params.number)
        return preview_spec(scope)
    except ValueError as exc:
        raise provider_error(str(exc)) from exc


def _range_and_params(request: web.Request, job: bool) -> tuple[ByteRange | None, DataParams]:
    """The request's ``Range`` (:class:`MalformedRange` if bad: answered 400 before the
    parameters are looked at, as CVAT does) and its data parameters."""
    return parse_range(request.headers.get("Range")), parse_data_params(request.query, job=job)


async def _serve_data(request: web.Request, *, job: bool) -> web.StreamResponse:
    user = current_user(request)
    svc = services(request)
    media = media_service(request)
    resolved = _resolved(request)
    token = resolved.token()
    object_id = int_param(request)
    scope_key = ("scope", job, object_id, user.id)
    scope: MediaScope | None = resolved.get(scope_key, token)
    try:
        if scope is None:
            async with svc.engine.connect() as conn:
                if job:
                    row = await get_job_for(conn, user, object_id)
                else:
                    row = await get_task_for(conn, user, object_id)
                byte_range, params = _range_and_params(request, job)
                scope = await (_job_scope(conn, row) if job else _task_scope(conn, row))
            resolved.put(scope_key, scope, token)
        else:  # the same checks in the same order, minus the access check already passed
            byte_range, params = _range_and_params(request, job)
    except MalformedRange:
        return invalid_range_response()
    spec = _data_spec(scope, params)
    build_key = ("build", spec.key)
    build = resolved.get(build_key, token)
    if build is None:
        async with svc.engine.connect() as conn:
            try:
                build = await media.prepare(conn, scope, spec)
            except NoContextImages:
                return web.Response(status=404)
        resolved.put(build_key, build, token)
    fetched = await _fetch(request, spec, build)
    headers: dict[str, str] = {}
    if params.type == "chunk":
        headers = _chunk_headers(scope, fetched)
        _prefetch(request, scope, params)
    elif params.type == "preview":
        headers = _preview_headers(request)
    entry = fetched.item.entry
    response = file_response(request, fetched.item, byte_range, headers=headers)
    if byte_range is None and response.status == 200 and not entry.transient:
        _offer_memo(request, media, spec, response, entry)
    return response


def _offer_memo(request: web.Request, media: MediaService, spec: ItemSpec,
                response: web.StreamResponse, entry: Entry) -> None:
    """Let ``http/microcache.py`` answer the next identical request from this one: from
    the memory tier if the item is there (now or by then), else from its cache file."""
    cache = media.cache
    hit = media.count_hit(spec.kind)

    def body() -> bytes | None:
        found = cache.recall(entry.key)
        if found is None:
            return None
        hit()
        return found.body

    def answer(headers: Any) -> web.StreamResponse | None:
        found = body()
        if found is not None:
            return MemoryResponse(found, headers=headers)
        reopened = cache.reopen(entry)
        if reopened is None:  # evicted or cleared: resolve afresh
            return None
        hit()
        return CachedFileResponse(reopened, status=200, offset=0, count=reopened.size,
                                  headers=headers)

    request[OFFER] = Memo.of(response, answer, body)


_DATA_DOC = ("type=chunk|frame|preview|context_image; chunks carry X-Checksum and "
             "X-Updated-Date")


@operation("tasks_retrieve_data", "Get data of a task",
           query=models.data_query(DATA_TYPES, job=False), headers=models.ConditionalHeaders,
           responses=media_responses(undecodable=UNDECODABLE),
           description=_DATA_DOC)
async def task_data(request: web.Request) -> web.StreamResponse:
    return await _serve_data(request, job=False)


@operation("jobs_retrieve_data", "Get data of a job",
           query=models.data_query(DATA_TYPES, job=True), headers=models.ConditionalHeaders,
           responses=media_responses(undecodable=UNDECODABLE),
           description=_DATA_DOC)
async def job_data(request: web.Request) -> web.StreamResponse:
    return await _serve_data(request, job=True)


# --- previews ---------------------------------------------------------------------------------


def wants_empty_preview(request: web.Request) -> bool:
    """``Prefer: handling=empty`` (RFC 7240), among other preferences or not."""
    for header in request.headers.getall("Prefer", []):
        for preference in header.split(","):
            token = preference.split(";", 1)[0].strip().lower().replace(" ", "")
            if token in ("handling=empty", 'handling="empty"'):
                return True
    return False


def _preview_headers(request: web.Request) -> dict[str, str]:
    headers = {"Vary": "Prefer"}
    if wants_empty_preview(request):
        headers["Preference-Applied"] = "handling=empty"
    return headers


def _no_preview(request: web.Request, what: str) -> web.Response:
    """A scope without a media-derived preview: 204 if the client opted in, else 404."""
    headers = _preview_headers(request)
    if wants_empty_preview(request):
        return web.Response(status=204, headers=headers)
    return web.Response(status=404, text=f"{what} image preview not found",
                        content_type="text/plain", headers=headers)


async def _serve_preview(request: web.Request, *, job: bool) -> web.StreamResponse:
    user = current_user(request)
    svc = services(request)
    media = media_service(request)
    what = "Job" if job else "Task"
    async with svc.engine.connect() as conn:
        if job:
            row = await get_job_for(conn, user, int_param(request))
        else:
            row = await get_task_for(conn, user, int_param(request))
        try:
            byte_range = parse_range(request.headers.get("Range"))
        except MalformedRange:
            return invalid_range_response()
        try:
            scope = await (load_job_scope(conn, row) if job else load_task_scope(conn, row))
        except NoMedia:
            return web.Response(status=404, text=f"{what} image preview not found",
                                content_type="text/plain", headers=_preview_headers(request))
        if scope.data.media_type not in ("image", "video"):
            return _no_preview(request, what)
        spec = preview_spec(scope)
        build = await media.prepare(conn, scope, spec)
    fetched = await _fetch(request, spec, build)
    return file_response(request, fetched.item, byte_range, headers=_preview_headers(request))


@operation("tasks_retrieve_preview", "Get a preview image for a task",
           headers=models.PreviewHeaders,
           responses=preview_responses(undecodable=UNDECODABLE))
async def task_preview(request: web.Request) -> web.StreamResponse:
    return await _serve_preview(request, job=False)


@operation("jobs_retrieve_preview", "Get a preview image for a job",
           headers=models.PreviewHeaders,
           responses=preview_responses(undecodable=UNDECODABLE))
async def job_preview(request: web.Request) -> web.StreamResponse:
    return await _serve_preview(request, job=True)


# --- data/meta ----------------------------------------------------------------------------------


async def _meta_response(request: web.Request, conn: AsyncConnection,
                         scope: MediaScope) -> web.Response:
    meta = await media_service(request).meta(conn, scope)
    meta["chunks_updated_date"] = iso(meta["chunks_updated_date"])
    if len(meta["frames"]) > 5000:  # big image tasks: keep JSON encoding off the loop
        body = await asyncio.to_thread(_dumps, meta)
        return web.Response(body=body, content_type=JSON_CONTENT_TYPE)
    return json_response(meta)


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@operation("tasks_retrieve_data_meta", "Get metainformation for media files in a task",
           responses={200: cvat_json(models.DataMetaRead), 404: MEDIA_NOT_FOUND})
async def task_meta(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        task = await get_task_for(conn, user, int_param(request))
        scope = await _task_scope(conn, task)
        return await _meta_response(request, conn, scope)


@operation("jobs_retrieve_data_meta", "Get metainformation for media files in a job",
           responses={200: cvat_json(models.DataMetaRead), 404: MEDIA_NOT_FOUND})
async def job_meta(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.connect() as conn:
        job = await get_job_for(conn, user, int_param(request))
        scope = await _job_scope(conn, job)
        return await _meta_response(request, conn, scope)


def frame_numbers(value: Any) -> list[int]:
    """DRF ``ListField(child=IntegerField(min_value=0))`` - a list of frame numbers
    (``deleted_frames`` here, ``disabled_frames`` in ``http/validation.py``): per-item
    errors by index."""
    items = list_field(value)
    parsed: list[int] = []
    errors: dict[str, Any] = {}
    for position, item in enumerate(items):
        try:
            number = int_field(item, min_value=0)
        except Invalid as exc:
            errors[str(position)] = exc.detail
            continue
        assert number is not None
        parsed.append(number)
    if errors:
        raise Invalid(errors)
    return parsed


def _check_unique(frames: list[int] | None) -> None:
    if frames is not None and len(frames) != len(set(frames)):
        raise bad_request("Deleted frames cannot repeat")


def _cloud_storage_id(value: Any) -> None:
    if value is None:
        return
    number = int_field(value)
    # framesvc has no cloud storages, so no id can name one (DRF's related-field message).
    raise Invalid([f'Invalid pk "{number}" - object does not exist.'])


def _frames_list(frames: list[int]) -> str:
    return format_list([str(f) for f in sorted(frames)])


async def _write_deleted(conn: AsyncConnection, scope: MediaScope, frames: list[int]) -> None:
    await conn.execute(
        data_table.update().where(data_table.c.id == scope.data.id).values(
            deleted_frames=sorted(frames))
    )
    await conn.execute(
        tasks.update().where(tasks.c.id == scope.task_id).values(updated_date=utcnow())
    )


@operation("tasks_partial_update_data_meta", "Update metainformation for media files in a task",
           body=models.PatchedDataMetaWriteRequest,
           responses={200: cvat_json(models.DataMetaRead), **errors(400, 403),
                      404: MEDIA_NOT_FOUND})
async def patch_task_meta(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.begin() as conn:
        task = await get_task_for(conn, user, int_param(request), write=True)
        payload = await read_json(request)
        try:
            fields = Fields(payload)
            frames = fields.get("deleted_frames", frame_numbers)
            fields.get("cloud_storage_id", _cloud_storage_id)
            fields.check()
        except Invalid as exc:
            raise ApiError(400, exc.detail) from exc
        _check_unique(frames)
        scope = await _task_scope(conn, task)
        if frames is not None:
            unknown = [f for f in frames if f >= scope.data.size]
            if unknown:
                raise bad_request(f"Unknown frames {_frames_list(unknown)} requested for removal")
            await _write_deleted(conn, scope, frames)
            scope = await _task_scope(conn, task)
        return await _meta_response(request, conn, scope)


@operation("jobs_partial_update_data_meta", "Update metainformation for media files in a job",
           body=models.PatchedJobDataMetaWriteRequest,
           description=("deleted_frames replaces the job's part of the task's deleted "
                        "frames; for a ground-truth job, the frames it excludes from "
                        "validation (the task's validation_layout disabled_frames)"),
           responses={200: cvat_json(models.DataMetaRead), **errors(400, 403),
                      404: MEDIA_NOT_FOUND})
async def patch_job_meta(request: web.Request) -> web.Response:
    user = current_user(request)
    async with services(request).engine.begin() as conn:
        job = await get_job_for(conn, user, int_param(request), write=True)
        payload = await read_json(request)
        try:
            fields = Fields(payload)
            frames = fields.get("deleted_frames", frame_numbers)
            fields.check()
        except Invalid as exc:
            raise ApiError(400, exc.detail) from exc
        _check_unique(frames)
        scope = await _job_scope(conn, job)
        if frames is not None:
            own = job_rel_frames(scope)
            foreign = [f for f in frames if f not in own]
            if foreign:
                raise bad_request(f"Frames {_frames_list(foreign)} do not belong to the job")
            if job.type == "ground_truth":
                # CVAT: a GT job's frames are excluded from validation (the layout's
                # disabled_frames), not deleted from the task's annotation jobs.
                if not await replace_disabled_frames(conn, job.task_id, job.id, frames):
                    raise not_found()
            else:
                current = (
                    await conn.execute(sa.select(data_table.c.deleted_frames).where(
                        data_table.c.id == scope.data.id))
                ).scalar() or []
                await _write_deleted(
                    conn, scope, deleted_frames_for_job([int(f) for f in current], own, frames))
            scope = await _job_scope(conn, job)
        return await _meta_response(request, conn, scope)


# --- lifecycle -----------------------------------------------------------------------------------


async def on_startup(app: web.Application) -> None:
    svc: Services = app[SERVICES]
    loop = asyncio.get_running_loop()
    # Opening the cache sweeps orphaned partial files: blocking, so off the loop.
    cache = await loop.run_in_executor(None, MediaCache.from_settings, svc.settings)
    prefetcher = Prefetcher(cache, svc.pool, depth=svc.settings.prefetch_chunks)
    svc.extras[MEDIA] = MediaService(cache, svc.pool, prefetcher=prefetcher)


async def on_cleanup(app: web.Application) -> None:
    media: MediaService | None = app[SERVICES].extras.pop(MEDIA, None)
    if media is None:
        return
    if media.prefetcher is not None:
        await media.prefetcher.aclose()
    await media.cache.aclose()


routes = [
    ("GET", "/api/tasks/{id}/data", task_data),
    ("GET", "/api/jobs/{id}/data", job_data),
    ("GET", "/api/tasks/{id}/data/meta", task_meta),
    ("PATCH", "/api/tasks/{id}/data/meta", patch_task_meta),
    ("GET", "/api/jobs/{id}/data/meta", job_meta),
    ("PATCH", "/api/jobs/{id}/data/meta", patch_job_meta),
    ("GET", "/api/tasks/{id}/preview", task_preview),
    ("GET", "/api/jobs/{id}/preview", job_preview),
]

__all__ = ["MEDIA", "DataParams", "frame_numbers", "media_service", "parse_data_params", "routes"]

"""Handler metadata for the OpenAPI schema: one ``@operation(...)`` decorator per handler.

``operation`` is a thin layer over aiohttp-apigami's ``docs``/``querystring_schema``/
``headers_schema``/``request_schema`` decorators that adds framesvc's conventions:
CVAT's ``application/vnd.cvat+json`` response type, its error bodies, a tag taken
from the operation id, and list query parameters generated from the same
:class:`~framesvc.store.listing.ListFields` that the list endpoints filter and sort with.

Only metadata is attached (``__apispec__`` on the handler); the handler runs unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiohttp_apigami import (
    docs,
    headers_schema,
    match_info_schema,
    querystring_schema,
    request_schema,
)
from marshmallow import Schema, fields

from framesvc.media.chunks import MP4_MIME, ZIP_MIME
from framesvc.media.preview import PREVIEW_MIME
from framesvc.openapi import models
from framesvc.store.filters import python_type
from framesvc.store.listing import ListFields

CVAT_JSON = "application/vnd.cvat+json"
TEXT = "text/plain"

F = TypeVar("F", bound=Callable[..., Any])

#: Bodies of 400 answers: DRF's ``["msg"]`` or ``{"field": [...]}``, or (media endpoints)
#: a JSON string.
VALIDATION_ERROR: dict[str, Any] = {
    "anyOf": [
        {"type": "array", "items": {}},
        {"type": "object"},
        {"type": "string"},
    ]
}
#: ``["message"]`` (409, 412, 413, 415 of uploads).
MESSAGES: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
#: A binary body (media, previews).
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def cvat_json(schema: Any, description: str = "") -> dict[str, Any]:
    """A response with a JSON body (a marshmallow schema or a raw JSON schema)."""
    return {"description": description, "content": {CVAT_JSON: {"schema": schema}}}


def no_body(description: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A response without a body (204, 304, ...), optionally documenting headers."""
    out: dict[str, Any] = {"description": description}
    if headers:
        out["headers"] = _header_docs(headers)
    return out


def binary(description: str, media_types: Iterable[str]) -> dict[str, Any]:
    return {"description": description,
            "content": {media_type: {"schema": BINARY} for media_type in media_types}}


def text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {TEXT: {"schema": {"type": "string"}}}}


_ERRORS: dict[int, dict[str, Any]] = {
    400: cvat_json(VALIDATION_ERROR, "Invalid request; the body names the problem"),
    403: cvat_json(models.ErrorDetail, "Not allowed for this user"),
    404: cvat_json(models.ErrorDetail, "Not found (or not visible to this user)"),
    409: cvat_json(MESSAGES, "Conflicts with the current state"),
}


#: A media endpoint's 404: the object is not visible (``{"detail"}``) or has no media
#: (a JSON string, as CVAT's data getter answers).
MEDIA_NOT_FOUND = cvat_json({"anyOf": [models.ErrorDetail, {"type": "string"}]},
                            "Not found, or the task has no media")
#: A JSON string naming the problem (CVAT's data getter renders its errors so).
MESSAGE: dict[str, Any] = {"type": "string"}


def errors(*codes: int) -> dict[int, dict[str, Any]]:
    """The usual error responses for ``codes`` (401 is added for protected endpoints)."""
    return {code: _ERRORS[code] for code in codes}


# --- media endpoints ------------------------------------------------------------------------------

#: What ``GET …/data`` serves: zip chunks and context images, mp4 chunks, frames in the
#: source's own image format (original quality) or JPEG/PNG.
MEDIA_TYPES = (ZIP_MIME, MP4_MIME, "image/*", "application/octet-stream")


def _header_docs(headers: Mapping[str, str]) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()}


def media_responses(*, undecodable: int,
                    media_types: tuple[str, ...] = MEDIA_TYPES) -> dict[int, dict[str, Any]]:
    """The answers of the file endpoints (``http/media.py``, ``http/responses.py``)."""
    full = binary("The requested item", media_types)
    full["headers"] = _header_docs({
        "ETag": "Strong validator of the content", "Last-Modified": "",
        "X-Checksum": "Chunks only: CVAT's checksum of the chunk",
        "X-Updated-Date": "Chunks only: when the task's chunks last changed"})
    partial = binary("One byte range of the item", media_types)
    partial["headers"] = _header_docs({"Content-Range": "bytes a-b/size"})
    bad = cvat_json(VALIDATION_ERROR, "Invalid parameters, or (text) an invalid Range header")
    bad["content"][TEXT] = {"schema": {"type": "string"}}
    return {
        200: full,
        206: partial,
        304: no_body("Not modified (If-None-Match / If-Modified-Since)"),
        400: bad,
        404: MEDIA_NOT_FOUND,
        416: no_body("Range not satisfiable", {"Content-Range": "bytes */size"}),
        undecodable: cvat_json(MESSAGE, "The task's media cannot produce the item"),
        503: cvat_json(MESSAGE, "Still being built; retry after Retry-After seconds"),
    }


def preview_responses(*, undecodable: int) -> dict[int, dict[str, Any]]:
    out = media_responses(undecodable=undecodable, media_types=(PREVIEW_MIME,))
    out[200]["description"] = "A JPEG thumbnail of the first frame"
    for chunk_only in ("X-Checksum", "X-Updated-Date"):
        del out[200]["headers"][chunk_only]
    out[204] = no_body("No preview, and the client sent Prefer: handling=empty")
    out[404] = cvat_json(MEDIA_NOT_FOUND["content"][CVAT_JSON]["schema"],
                         "Not found, or (text) no preview")
    out[404]["content"][TEXT] = {"schema": {"type": "string"}}
    return out


def operation(
    operation_id: str,
    summary: str,
    *,
    responses: Mapping[int, dict[str, Any]],
    query: Any = None,
    match_info: Any = None,
    headers: Any = None,
    body: Any = None,
    body_required: bool = True,
    request_body: dict[str, Any] | None = None,
    description: str | None = None,
) -> Callable[[F], F]:
    """Describe one handler.

    ``query``/``match_info``/``headers``/``body`` are marshmallow schemas (classes or
    instances); ``body`` is sent as ``application/json``.  ``request_body`` is a raw
    OpenAPI request body for endpoints with several content types.  The tag is the
    operation id's first word (``tasks_list`` -> ``tasks``), as in CVAT's schema.
    """
    extra: dict[str, Any] = {}
    if description:
        extra["description"] = description
    if request_body is not None:
        extra["requestBody"] = request_body
    doc = docs(
        operation_id=operation_id,
        summary=summary,
        tags=[operation_id.split("_", 1)[0]],
        responses=dict(responses),
        **extra,
    )

    def wrap(handler: F) -> F:
        handler = doc(handler)
        if query is not None:
            handler = querystring_schema(query)(handler)
        if match_info is not None:
            handler = match_info_schema(match_info)(handler)
        if headers is not None:
            handler = headers_schema(headers)(handler)
        if body is not None:
            handler = request_schema(body, required=body_required)(handler)
        return handler

    return wrap


# --- list endpoints -------------------------------------------------------------------------------

_PAGINATION: dict[str, fields.Field] = {
    "page": fields.Integer(metadata={
        "description": "A page number within the paginated result set."}),
    "page_size": fields.Integer(metadata={
        "description": "Number of results to return per page."}),
}
_ORGANIZATION: dict[str, fields.Field] = {
    "org": fields.String(metadata={"description": "Organization slug (ignored)"}),
    "org_id": fields.Integer(metadata={"description": "Organization identifier (ignored)"}),
}


def _typed(kind: type | None, description: str) -> fields.Field:
    meta = {"description": description}
    if kind is bool:
        return fields.Boolean(metadata=meta)
    if kind is int:
        return fields.Integer(metadata=meta)
    if kind is dt.datetime:
        return fields.DateTime(metadata=meta)
    return fields.String(metadata=meta)


def list_query(name: str, list_fields: ListFields, **extra: fields.Field) -> type[Schema]:
    """The query of a CVAT list endpoint, generated from the resource's ``ListFields``:
    pagination, ``sort``/``search``/``filter`` naming the accepted fields, and one
    equality filter per simple field, typed like its column."""
    spec: dict[str, fields.Field] = dict(_PAGINATION)
    spec["sort"] = fields.String(metadata={
        "description": "Which field to use when ordering the results. Available "
        f"ordering_fields: {sorted(list_fields.sortable)}"})
    spec["search"] = fields.String(metadata={
        "description": "A search term. Available search_fields: "
        f"{list(list_fields.search)}"})
    spec["filter"] = fields.String(metadata={
        "description": "JSON Logic filter. Available filter_fields: "
        f"{sorted(list_fields.filterable)}"})
    for field_name in list_fields.simple:
        spec[field_name] = _typed(
            python_type(list_fields.columns[field_name]),
            f"A simple equality filter for the {field_name} field")
    spec.update(_ORGANIZATION)
    spec.update(extra)
    return Schema.from_dict(spec, name=name)


def paginated(item: type[Schema], name: str | None = None) -> type[Schema]:
    """``Paginated<Item>List``: ``count``, ``next``, ``previous`` and ``results``."""
    required = {"required": True}
    return models.ResponseModel.from_dict(
        {
            "count": fields.Integer(**required),
            "next": fields.String(allow_none=True, **required),
            "previous": fields.String(allow_none=True, **required),
            "results": fields.List(fields.Nested(item), **required),
        },
        name=name or f"Paginated{item.__name__}List",
    )

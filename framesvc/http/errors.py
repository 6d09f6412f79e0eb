"""CVAT-shaped error responses.

CVAT (Django REST framework) answers validation errors with a JSON list of messages
(``["..."]``) or an object of field errors (``{"field": ["..."]}``), and 401/403/404
with ``{"detail": "..."}``.  Handlers raise :class:`ApiError`; the error middleware in
``http/middleware.py`` renders it, and turns anything unexpected into a logged 500
rather than a crash.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

JSON_CONTENT_TYPE = "application/vnd.cvat+json"


def json_response(payload: Any, status: int = 200, **kwargs: Any) -> web.Response:
    return web.Response(
        body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(),
        status=status,
        content_type=JSON_CONTENT_TYPE,
        **kwargs,
    )


class ApiError(Exception):
    """An error answered to the client with ``status`` and a JSON ``body``."""

    def __init__(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> web.Response:
        if self.body is None:
            return web.Response(status=self.status, headers=self.headers)
        return json_response(self.body, status=self.status, headers=self.headers)


def bad_request(*messages: str) -> ApiError:
    """400 with DRF's list body: ``["message", ...]``."""
    return ApiError(400, list(messages))


def field_errors(errors: dict[str, list[str] | str]) -> ApiError:
    """400 with DRF's per-field body: ``{"field": ["message"]}``."""
    body = {k: [v] if isinstance(v, str) else list(v) for k, v in errors.items()}
    return ApiError(400, body)


def not_authenticated() -> ApiError:
    return ApiError(401, {"detail": "Authentication credentials were not provided."})


def invalid_credentials(message: str = "Invalid token.") -> ApiError:
    return ApiError(401, {"detail": message})


def forbidden(message: str = "You do not have permission to perform this action.") -> ApiError:
    return ApiError(403, {"detail": message})


def not_found(message: str = "Not found.") -> ApiError:
    return ApiError(404, {"detail": message})


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, {"detail": f'Method "{method}" not allowed.'})

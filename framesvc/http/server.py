"""``/api/server``: what the SDK asks before anything else.

``Client(url)`` calls ``GET /api/server/about`` before logging in and checks ``version``
against its own (2.80.x and 2.81.x are accepted), so the answer is public, has all five
string fields, and reports the CVAT API version framesvc is compatible with.
"""

from __future__ import annotations

from aiohttp import web

from framesvc.http.context import absolute_url
from framesvc.http.errors import json_response
from framesvc.openapi import models
from framesvc.openapi.operations import cvat_json, operation

#: The CVAT server version whose API framesvc speaks (what cvat-sdk 2.80 checks).
COMPATIBLE_CVAT_VERSION = "2.80.0"


@operation("server_retrieve_about", "Get basic CVAT information",
           responses={200: cvat_json(models.About)})
async def about(request: web.Request) -> web.Response:
    return json_response(
        {
            "name": "framesvc",
            "subtitle": "Media frame and chunk service",
            "description": (
                "A media frame and chunk service for annotation tools, wire-compatible "
                "with CVAT's /api/tasks and /api/jobs media API."
            ),
            "version": COMPATIBLE_CVAT_VERSION,
            "logo_url": absolute_url(request, "/static/logo.svg"),
        }
    )


#: A small logo so that ``logo_url`` points at something real.
LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
    '<rect x="4" y="12" width="56" height="40" rx="4" fill="none" stroke="#1f6feb" '
    'stroke-width="4"/><rect x="12" y="20" width="12" height="24" fill="#1f6feb"/>'
    '<rect x="26" y="20" width="12" height="24" fill="#58a6ff"/>'
    '<rect x="40" y="20" width="12" height="24" fill="#1f6feb"/></svg>'
)


async def logo(request: web.Request) -> web.Response:
    return web.Response(text=LOGO_SVG, content_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


@operation("server_retrieve_plugins", "Get the optional components of the server",
           responses={200: cvat_json(models.Plugins)})
async def plugins(request: web.Request) -> web.Response:
    """CVAT's optional components; framesvc has neither analytics nor serverless models."""
    return json_response({"ANALYTICS": False, "MODELS": False})


routes = [
    ("GET", "/api/server/about", about),
    ("GET", "/api/server/plugins", plugins),
    ("GET", "/static/logo.svg", logo),
]

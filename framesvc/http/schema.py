"""``GET /api/schema/``: framesvc's OpenAPI 3 schema, generated from the running application.

The paths come from the application's own route table (``app.router``), the operations
from the ``@operation`` metadata on each handler (``framesvc/openapi/operations.py``) and
the models from ``framesvc/openapi/models.py``; aiohttp-apigami's route processor and
apispec's marshmallow plugin do the generation.  On top of that this module applies what
the route table and the authentication middleware already say, so it cannot drift either:

* aiohttp's canonical paths carry ``{_slash}`` (every route accepts an optional final
  slash, ``http/routing.py``): the schema shows the path without it, as CVAT's does;
* path parameters that ``routing.INT_PARAMS`` routes as integers are integers;
* an endpoint that ``auth.access_for`` says needs credentials gets the security schemes
  and the middleware's 401/429 answers; public ones get none;
* an operation with a request body gets the request guard's 408/413/415 answers, and one
  with path parameters the router's 404.

Routes without metadata (``/metrics``, ``/static/...``) are left out on purpose; a test
checks that every other route is described.  The schema is built once, on startup.
JSON by default (``application/vnd.oai.openapi+json``, drf-spectacular's type), YAML
with ``?format=yaml``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from aiohttp import web
from aiohttp_apigami.core import resolver
from aiohttp_apigami.plugin import ApigamiPlugin
from aiohttp_apigami.route_processor import RouteProcessor
from apispec import APISpec, BasePlugin
from marshmallow import Schema, fields, validate

from framesvc import __version__ as framesvc_version
from framesvc.app import SERVICES
from framesvc.http.auth import Access, access_for
from framesvc.http.errors import not_found
from framesvc.http.routing import INT_PARAMS
from framesvc.http.server import COMPATIBLE_CVAT_VERSION
from framesvc.openapi import models
from framesvc.openapi.operations import CVAT_JSON, errors, operation

#: Key of the built schema in ``Services.extras``.
SCHEMA = "openapi.schema"
JSON_TYPE = "application/vnd.oai.openapi+json"
YAML_TYPE = "application/vnd.oai.openapi"
SLASH = "{_slash}"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "tokenAuth": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": 'The key returned by login, as "Token <key>"',
    },
    "bearerAuth": {
        "type": "http", "scheme": "bearer",
        "description": "A personal access token (framesvc user token)",
    },
    "sessionAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
    "csrfAuth": {
        "type": "apiKey", "in": "header", "name": "X-CSRFToken",
        "description": "Required with sessionAuth on unsafe methods",
    },
    "basicAuth": {"type": "http", "scheme": "basic"},
}
#: Any one of these satisfies a protected endpoint.
SECURITY: list[dict[str, list[str]]] = [
    {"tokenAuth": []},
    {"bearerAuth": []},
    {"sessionAuth": [], "csrfAuth": []},
    {"basicAuth": []},
]


def _detail(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {CVAT_JSON: {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}}


#: Answers of the authentication middleware to any protected endpoint.
AUTH_RESPONSES = {
    "401": _detail("No or invalid credentials"),
    "429": _detail("Too many failed password checks; retry after Retry-After seconds"),
}
#: A path parameter value the route's pattern does not match is not routed at all.
ROUTING_RESPONSES = {"404": _detail("Not found")}
#: Answers of the request guard (``http/security.py``) to any request with a body.
BODY_RESPONSES = {
    "408": _detail("The body did not arrive in time"),
    "413": _detail("The body is too large"),
    "415": _detail("A compressed (Content-Encoding) body"),
}


class _CopyOperations(BasePlugin):
    """Give apispec copies of the handlers' responses and request bodies.

    apispec resolves models into ``$ref`` *in place*, inside the dicts the decorators
    stored on the handlers; a second build (another application in the same process)
    would then find references to models it never registered.
    """

    def operation_helper(self, path: str | None = None,
                         operations: dict[str, Any] | None = None, **kwargs: Any) -> None:
        for op in (operations or {}).values():
            for key in ("responses", "requestBody"):
                if key in op:
                    op[key] = copy.deepcopy(op[key])


def build_schema(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes."""
    spec = APISpec(
        title="framesvc API",
        version=framesvc_version,
        openapi_version="3.0.3",
        # The copying plugin must run before apigami's, which resolves the models.
        plugins=[_CopyOperations(), ApigamiPlugin(schema_name_resolver=resolver)],
        info={
            "description": "Media frame and chunk service, wire-compatible with the CVAT "
            f"{COMPATIBLE_CVAT_VERSION} /api/tasks and /api/jobs media API."
        },
    )
    spec.components.schema("ErrorDetail", schema=models.ErrorDetail)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    RouteProcessor(spec).register_routes(app)
    document = copy.deepcopy(spec.to_dict())
    paths = {path.replace(SLASH, ""): ops for path, ops in document.get("paths", {}).items()}
    document["paths"] = {path: _operations(path, paths[path]) for path in sorted(paths)}
    return document


def _operations(path: str, operations: dict[str, Any]) -> dict[str, Any]:
    for method, op in operations.items():
        op.pop("produces", None)  # a Swagger 2 key that apigami adds
        op["parameters"] = [_parameter(p) for p in op.get("parameters", [])
                            if p.get("name") != "_slash"]
        if not op["parameters"]:
            del op["parameters"]
        responses = op.setdefault("responses", {})
        if access_for(method.upper(), path) is Access.REQUIRED:
            op["security"] = copy.deepcopy(SECURITY)
            _add(responses, AUTH_RESPONSES)
        else:
            op["security"] = [{}]
        if "requestBody" in op:
            _add(responses, BODY_RESPONSES)
        if "{" in path:
            _add(responses, ROUTING_RESPONSES)
        op["responses"] = {code: responses[code] for code in sorted(responses)}
    return operations


def _add(responses: dict[str, Any], extra: dict[str, Any]) -> None:
    for code, response in extra.items():
        responses.setdefault(code, copy.deepcopy(response))


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    if param.get("in") == "path" and param.get("name") in INT_PARAMS:
        param["schema"] = {"type": "integer", "minimum": 0, "maximum": models.MAX_INT}
    return param


async def on_startup(app: web.Application) -> None:
    # Every module's routes are registered by now; the schema never changes afterwards.
    app[SERVICES].extras[SCHEMA] = build_schema(app)


class SchemaQuery(Schema):
    format = fields.String(validate=validate.OneOf(["json", "yaml"]))


@operation(
    "schema_retrieve",
    "Get the OpenAPI 3 schema of this API",
    query=SchemaQuery,
    responses={
        200: {
            "description": "The schema",
            "content": {JSON_TYPE: {"schema": {"type": "object"}},
                        YAML_TYPE: {"schema": {"type": "string"}}},
        },
        **errors(404),
    },
)
async def schema_view(request: web.Request) -> web.Response:
    document = request.app[SERVICES].extras[SCHEMA]
    wanted = request.query.get("format", "json")
    if wanted == "json":
        return web.Response(body=json.dumps(document).encode(), content_type=JSON_TYPE)
    if wanted == "yaml":
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return web.Response(text=text, content_type=YAML_TYPE)
    # DRF's format negotiation: an unknown format is "not found".
    raise not_found()


routes = [("GET", "/api/schema", schema_view)]

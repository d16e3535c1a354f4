"""The OpenAPI 3 document, generated from the handlers' endpoint declarations and schemas, and ReDoc."""

from __future__ import annotations

import http.client
import json
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from .. import __version__
from ..access import ACCESS, GRANTABLE, PUBLIC, Role
from ..assets import redoc_dir
from ..schemas import ErrorSchema
from .base import CSP_REDOC, WRITES, BaseHandler, StaticFiles

METHODS = ("get", "post", "put", "patch", "delete")
SECURITY_SCHEMES = {
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "Admin username/password, or a client application's login/password",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An admin token from /api/v1/auth/token, or an end user's token",
    },
    "appCredentials": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "A client application's `<login> <password>`",
    },
    "userToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "An end user's bare `<token>` from the auth server",
    },
}
SCHEMES_BY_ROLE = {
    Role.ADMIN: ("basic", "bearer"),
    Role.CLIENT: ("basic", "appCredentials"),
    Role.USER: ("bearer", "userToken"),
}
DESCRIPTION = """Notifications fanned out to users over email, Telegram, webhooks and an in-app inbox.

Errors are JSON: `{"message": "...", "errors": {"field": ["..."]}}`. Lists are paged with `limit` and
`cursor` (pass the previous page's `next_cursor`)."""


def openapi_path(pattern: str) -> str:
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


def path_parameters(pattern: str) -> list[dict]:
    """The path's parameters; one whose pattern is a choice of words (`(?P<change>read|seen)`) lists them."""
    parameters = []
    for name, body in re.findall(r"\(\?P<(\w+)>([^)]*)\)", pattern):
        schema: dict = {"type": "string"}
        if re.fullmatch(r"[\w-]+(\|[\w-]+)+", body):
            schema["enum"] = body.split("|")
        parameters.append({"in": "path", "name": name, "required": True, "schema": schema})
    return parameters


def _operation(endpoint, path_params: list[dict]) -> dict:
    operation: dict = {"summary": endpoint.summary, "tags": list(endpoint.tags), "responses": {}}
    if endpoint.access in GRANTABLE:
        operation["description"] = (
            f"A client application needs the `{endpoint.access}` permission, granted by an "
            f"admin (`PUT /api/v1/clients/{{id}}/permissions`)."
        )
    parameters = list(path_params)
    if endpoint.query is not None:
        parameters.append({"in": "query", "schema": endpoint.query})
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": endpoint.body}}}
    success: dict = {"description": http.client.responses[endpoint.status]}
    if endpoint.response is not None:
        schema = endpoint.response
        success["content"] = {
            "application/json": {"schema": {"type": "array", "items": schema} if endpoint.many else schema}
        }
    if endpoint.produces:
        success["content"] = {endpoint.produces: {"schema": {"type": "string"}}}
    operation["responses"][str(endpoint.status)] = success
    for status in endpoint.also:
        operation["responses"][str(status)] = {**success, "description": http.client.responses[status]}
    for status in endpoint.errors:
        operation["responses"][str(status)] = {
            "description": http.client.responses[status],
            "content": {"application/json": {"schema": "Error"}},
        }
    if endpoint.access == PUBLIC:
        operation["security"] = []
    else:
        schemes = sorted({s for role in ACCESS[endpoint.access] for s in SCHEMES_BY_ROLE[role]})
        operation["security"] = [{scheme: []} for scheme in schemes]
    return operation


def build_spec(routes: list) -> dict:
    spec = APISpec(
        title="notifier",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": DESCRIPTION},
    )
    spec.components.schema("Error", schema=ErrorSchema)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for pattern, handler in routes:
        operations = {}
        for method in METHODS:
            endpoint = getattr(getattr(handler, method, None), "endpoint", None)
            if endpoint is not None:
                operations[method] = _operation(endpoint, path_parameters(pattern))
                if endpoint.access != PUBLIC:  # the password guard's 429; a Basic write without JSON's 403
                    refusals = (403, 429) if method.upper() in WRITES else (429,)
                    for status in refusals:
                        operations[method]["responses"].setdefault(
                            str(status),
                            {
                                "description": http.client.responses[status],
                                "content": {"application/json": {"schema": "Error"}},
                            },
                        )
        if operations:
            spec.path(path=openapi_path(pattern), operations=operations)
    return add_links(spec.to_dict())


def add_links(document: dict) -> dict:
    """OpenAPI links from each create (a POST answering 201 with an `id`) to the operations on what it
    created, so that clients and stateful fuzzers can follow create -> read/change/delete."""
    paths = document["paths"]
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links = {}
        for other, others in paths.items():
            match = re.fullmatch(re.escape(path) + r"/\{(\w+)\}(/.*)?", other)
            if match is None:
                continue
            for method in others:
                pointer = other.replace("~", "~0").replace("/", "~1")
                name = f"{method}{''.join(part.title() for part in re.findall(r'[a-z]+', other[len(path) :]))}"
                links[name] = {
                    "operationRef": f"#/paths/{pointer}/{method}",
                    "parameters": {match.group(1): "$response.body#/id"},
                }
        if links:
            created["links"] = links
    return document


class OpenAPIHandler(BaseHandler):
    def get(self):
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(self.application.settings["openapi"]))


class RedocHandler(BaseHandler):
    content_security_policy = CSP_REDOC

    def get(self):
        self.render("redoc.html")


def routes(assets_dir: str) -> list:
    return [
        (r"/api/schema/?", OpenAPIHandler),
        (r"/api/schema/redoc/", RedocHandler),
        (r"/api/schema/redoc/assets/(.*)", StaticFiles, {"path": str(redoc_dir(assets_dir))}),
    ]

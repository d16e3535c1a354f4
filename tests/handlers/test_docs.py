"""The OpenAPI document at /api/schema/ and ReDoc at /api/schema/redoc/, no CDN."""

from __future__ import annotations

import re

import pytest

from notifier.handlers import API_ROUTES


@pytest.mark.gen_test
async def test_schema_documents_every_operation(api):
    response = await api.get("/api/schema/")
    assert response.status == 200
    spec = response.body
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for pattern, handler in API_ROUTES:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(getattr(handler, method, None), "endpoint"):
                assert (path, method) in documented
    create = spec["paths"]["/api/v1/notifications"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert {"title", "text", "channel", "recipients"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    assert "201" in create["responses"] and "400" in create["responses"]


@pytest.mark.gen_test
async def test_redoc_page_uses_local_assets(api):
    page = await api.get("/api/schema/redoc/")
    assert page.status == 200
    html = page.raw.decode()
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/api/schema/redoc/assets/redoc.standalone.js"]
    assert 'spec-url="/api/schema/"' in html
    bundle = await api.get(scripts[0])
    assert bundle.status == 200 and len(bundle.raw) > 100_000


@pytest.mark.gen_test
async def test_schema_documents_client_permissions(api):
    spec = (await api.get("/api/schema/")).body
    grant = spec["paths"]["/api/v1/clients/{client_id}/permissions"]["put"]
    body = grant["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert spec["components"]["schemas"][body]["properties"]["permissions"]["items"]["enum"] == [
        "contacts:read",
        "contacts:write",
    ]
    assert "contacts:write" in spec["paths"]["/api/v1/users/{user_id}"]["put"]["description"]
    client = spec["components"]["schemas"]["Client"]["properties"]
    assert "permissions" in client


@pytest.mark.gen_test
async def test_each_create_links_to_the_operations_on_what_it_created(api):
    spec = (await api.get("/api/schema/")).body
    links = spec["paths"]["/api/v1/schedules"]["post"]["responses"]["201"]["links"]
    targets = {link["operationRef"] for link in links.values()}
    for path, method in (
        ("/api/v1/schedules/{schedule_id}", "get"),
        ("/api/v1/schedules/{schedule_id}", "patch"),
        ("/api/v1/schedules/{schedule_id}/enable", "post"),
        ("/api/v1/schedules/{schedule_id}/preview", "get"),
    ):
        assert f"#/paths/{path.replace('/', '~1')}/{method}" in targets
    assert all(link["parameters"] == {"schedule_id": "$response.body#/id"} for link in links.values())
    assert "links" in spec["paths"]["/api/v1/notifications"]["post"]["responses"]["201"]
    assert "links" in spec["paths"]["/api/v1/clients"]["post"]["responses"]["201"]

"""``/docs`` loads Swagger UI from the package: nothing it needs comes from the internet."""

from __future__ import annotations

import re

import httpx

ASSET_REFERENCE = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: *["']([^"']+)["']""")


async def test_docs_page_references_only_assets_the_api_serves(api: httpx.AsyncClient) -> None:
    page = await api.get("/docs")
    assert page.status_code == 200
    references = {first or second for first, second in ASSET_REFERENCE.findall(page.text)}
    assert references >= {
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    }
    assert not [ref for ref in references if "//" in ref], "an asset from another host"
    expected_types = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}
    for reference in references:
        asset = await api.get(reference)
        assert asset.status_code == 200, reference
        suffix = reference[reference.rfind(".") :]
        assert expected_types[suffix] in asset.headers["content-type"], reference


async def test_docs_assets_ship_with_their_licence(api: httpx.AsyncClient) -> None:
    licence = await api.get("/docs/assets/LICENSE")
    assert licence.status_code == 200
    assert "Apache License" in licence.text
    assert (await api.get("/docs/assets/../app.py")).status_code == 404

"""``GET /viewer``: one page that shows the cubes on a map, and the files it needs.

The page (``static/page/``: ``viewer.html``, ``viewer.js``, ``viewer.css``) draws with MapLibre GL JS,
installed from the npm registry into ``static/node_modules`` by ``make install``
(``npm ci`` over ``static/package-lock.json``) and served by the app itself from
``/viewer/vendor/``: nothing comes from a CDN, so the viewer works offline. Its style has no
basemap: the cube's tiles, their outlines and footprints are the map.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_DIR = STATIC_DIR / "page"
MAPLIBRE_DIST = STATIC_DIR / "node_modules" / "maplibre-gl" / "dist"
#: The MapLibre files the page loads, as served under ``/viewer/vendor/``.
VENDOR_FILES = {"maplibre-gl.js": "application/javascript", "maplibre-gl.css": "text/css"}


def maplibre_installed() -> bool:
    """Whether ``npm ci`` has installed MapLibre GL JS beside the page.

    Returns:
        True when both vendor files exist.
    """
    return all((MAPLIBRE_DIST / name).is_file() for name in VENDOR_FILES)


def include_viewer(app: FastAPI) -> None:
    """Mount ``GET /viewer``, its script and style (``/viewer/static/``) and MapLibre (``/viewer/vendor/``)."""
    router = APIRouter(tags=["Viewer"])

    @router.get("/viewer", response_class=FileResponse, include_in_schema=True)
    def viewer() -> FileResponse:
        """The map viewer page."""
        if not maplibre_installed():
            raise HTTPException(
                status_code=503,
                detail=f"MapLibre GL JS is not installed in {MAPLIBRE_DIST}: run `make install` (npm ci)",
            )
        return FileResponse(PAGE_DIR / "viewer.html", media_type="text/html")

    @router.get("/viewer/vendor/{name}", response_class=FileResponse)
    def vendor(name: str) -> FileResponse:
        """MapLibre GL JS's script or style, from the npm package."""
        if name not in VENDOR_FILES or not (MAPLIBRE_DIST / name).is_file():
            raise HTTPException(status_code=404, detail=f"no vendor file {name[:100]!r}")
        return FileResponse(MAPLIBRE_DIST / name, media_type=VENDOR_FILES[name])

    app.include_router(router)
    app.mount("/viewer/static", StaticFiles(directory=PAGE_DIR, check_dir=True), name="viewer-static")


__all__ = ["PAGE_DIR", "STATIC_DIR", "include_viewer", "maplibre_installed"]

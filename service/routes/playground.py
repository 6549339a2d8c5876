"""The playground: a chat page at ``/`` over the server's own OpenAI-compatible API.

Plain files in service/playground/ (no build step). The page refers to its script, its
style and the API by relative URLs, so it works behind a provider's proxy or a path
prefix; its content security policy lets it talk to this server only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE_DIR = Path(__file__).resolve().parent.parent / "playground"
# 'self' only: no inline script, no third-party origin; connect-src covers the fetches to /v1.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def install_playground(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/playground/``."""
    page = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    router = APIRouter(tags=["playground"])

    @router.get("/", include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    app.include_router(router)
    app.mount("/playground", StaticFiles(directory=PAGE_DIR), name="playground")

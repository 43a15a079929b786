"""Plain server-rendered HTML (escaped; no template engine for two pages)."""

from __future__ import annotations

from html import escape

from litestar import Response
from litestar.enums import MediaType

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}"
    ".muted{color:#666}"
)


def document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def html(content: str, status: int = 200) -> Response[str]:
    return Response(
        content,
        status_code=status,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def message_page(title: str, message: str, status: int) -> Response[str]:
    return html(document(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"), status)

"""HTML for the member-facing pages (login, consent, error), served with anti-framing and no-store headers."""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template

from starlette.responses import HTMLResponse

from smart_conformance.reference.context import Context
from smart_conformance.reference.faults import Fault


@cache
def _template(name: str) -> Template:
    text = resources.files("smart_conformance.reference").joinpath("templates", name).read_text(encoding="utf-8")
    return Template(text)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(ctx: Context, name: str, status: int = 200, *, raw: dict[str, str] | None = None,
         headers: dict[str, str] | None = None, script_nonce: str | None = None, **values: object) -> HTMLResponse:
    """Render a template: ``values`` are escaped, ``raw`` fragments were built from escaped parts by the caller.

    ``script_nonce``: the page runs one inline script with that nonce (the script-rendered sign-in), which may fetch
    from this origin; every other page runs no script at all."""
    body = _template(name).substitute({**{k: esc(v) for k, v in values.items()}, **(raw or {})})
    response = HTMLResponse(body, status_code=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    if not ctx.faults.active(Fault.SIGN_IN_PAGES_WITHOUT_REFERRER_POLICY):
        response.headers["Referrer-Policy"] = "no-referrer"
    if not ctx.faults.active(Fault.CONSENT_PAGE_FRAMEABLE):
        response.headers["X-Frame-Options"] = "DENY"
        scripts = f"; script-src 'nonce-{script_nonce}'; connect-src 'self'" if script_nonce else ""
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'{scripts}")
    return response


def error_page(ctx: Context, error: str, description: str, status: int = 400) -> HTMLResponse:
    """Shown instead of redirecting when the redirect target cannot be trusted (RFC 6749 §4.1.2.1)."""
    return page(ctx, "error.html", status, error=error, description=description)

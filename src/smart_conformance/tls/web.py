"""HTTP over and without TLS: the Strict-Transport-Security header, and what plain ``http://`` does.

Both are read from httpx responses as well as from sslyze's own GET, so they live apart from the scanner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from smart_conformance import redact
from smart_conformance.tls.model import HstsPolicy

# --------------------------------------------------------------------------------------------------------------------
# HSTS header parsing (for httpx responses too)
# --------------------------------------------------------------------------------------------------------------------


def hsts_from_headers(headers: httpx.Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> HstsPolicy | None:
    """Parse the FIRST Strict-Transport-Security header (RFC 6797 §8.1: later ones are ignored).

    Directive names are case-insensitive and values may be quoted. A header without a usable max-age, or with a
    repeated directive, is returned with ``max_age=None`` so a check can say "present but invalid".
    """
    raw = _first_header(headers, "strict-transport-security")
    if raw is None:
        return None
    max_age: int | None = None
    seen: set[str] = set()
    include_subdomains = preload = invalid = False
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if name in seen:
            invalid = True
        seen.add(name)
        value = value.strip().strip('"')
        if name == "max-age":
            max_age = int(value) if value.isdigit() else None
            invalid = invalid or max_age is None
        elif name == "includesubdomains":
            include_subdomains = True
        elif name == "preload":
            preload = True
    return HstsPolicy(None if invalid else max_age, include_subdomains, preload, raw)


def _first_header(headers: Any, name: str) -> str | None:
    if isinstance(headers, httpx.Headers):
        values = headers.get_list(name)
        return values[0] if values else None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key.lower() == name:
            return str(value)
    return None


# --------------------------------------------------------------------------------------------------------------------
# Plain-HTTP probe
# --------------------------------------------------------------------------------------------------------------------

PlainHttpStatus = Literal["refused", "redirect_to_https", "redirect_elsewhere", "served", "error"]


@dataclass(frozen=True)
class PlainHttpResult:
    """What ``http://host:port/path`` does.

    ``refused``: connection refused or closed without an HTTP answer, or a 4xx/5xx (nothing served in clear text).
    ``redirect_to_https``: a 3xx to ``https://`` on the same host. ``redirect_elsewhere``: any other 3xx.
    ``served``: a 2xx (``data_served`` tells whether it carried a non-trivial body). ``error``: could not test.
    """

    status: PlainHttpStatus
    url: str
    status_code: int | None = None
    location: str | None = None
    body_snippet: str = ""
    data_served: bool = False
    detail: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


_SNIPPET = 300


def probe_plain_http(host: str, port: int = 80, path: str = "/", *, timeout: float = 5.0) -> PlainHttpResult:
    """One GET over plain http, redirects not followed. Only a refused connection counts as refused; timeouts and
    DNS failures are ``error`` because they say nothing about what the server would do."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"http://{netloc}{path if path.startswith('/') else '/' + path}"
    try:
        with httpx.Client(follow_redirects=False, trust_env=False, timeout=timeout) as client:
            response = client.get(url, headers={"Accept": "application/fhir+json, application/json, */*"})
    except httpx.TimeoutException as exc:
        return PlainHttpResult("error", url, detail=f"timed out after {timeout}s: {type(exc).__name__}")
    except httpx.ConnectError as exc:
        if _is_refusal(exc):
            return PlainHttpResult("refused", url, detail=f"connection refused: {exc}")
        return PlainHttpResult("error", url, detail=f"could not connect: {exc}")
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        # The port took the connection but closed or reset it without an HTTP answer (a TLS-only port hanging up on
        # plain text does this): nothing is served in clear text.
        return PlainHttpResult("refused", url, detail=f"no HTTP response over plain http: {type(exc).__name__}: {exc}")
    except httpx.HTTPError as exc:
        return PlainHttpResult("error", url, detail=f"{type(exc).__name__}: {exc}")

    body = response.text
    snippet = redact.text(body[:_SNIPPET])
    headers = tuple(redact.headers(response.headers.multi_items()))
    code = response.status_code
    if 300 <= code < 400:
        location = response.headers.get("location")
        target = urlsplit(response.url.join(location).__str__()) if location else None
        to_https = (target is not None and target.scheme == "https"
                    and (target.hostname or "").lower() == host.lower())
        return PlainHttpResult("redirect_to_https" if to_https else "redirect_elsewhere", url, code, location,
                               snippet, False, None if to_https else "redirect does not go to https on the same host",
                               headers)
    if 200 <= code < 300:
        return PlainHttpResult("served", url, code, None, snippet, bool(body.strip()), None, headers)
    return PlainHttpResult("refused", url, code, None, snippet, False, f"answered {code} over plain http", headers)


def _is_refusal(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        if "connection refused" in str(current).lower() or "errno 111" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False

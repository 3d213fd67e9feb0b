"""The member's pages requested again outside the browser, one parameter changed at a time.

The pages a launch loaded (sign-in, consent) and the authorization endpoint's answers are fetched by a client with no
cookies, following redirects only within the authorization server's own origins and never to an app: a probe can at
most start a sign-in. The checks that judge what comes back (echoed input, junk, return-to parameters, headers of
the error page) build their requests here.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from smart_conformance.browser import PageDocument
from smart_conformance.config import Target
from smart_conformance.http import NO_BACKOFF, RecordingClient
from smart_conformance.smart.authorize import AuthorizationRequest, standard_request

REDIRECTS = (301, 302, 303, 307, 308)
UNKNOWN_CLIENT = "smart-conformance-unknown-client"
MAX_HOPS = 5


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def with_param(url: str, name: str, value: str) -> str:
    """``url`` with query parameter ``name`` set to ``value`` (the others as they were)."""
    parts = urlsplit(url)
    query = [(k, value if k == name else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def fetch_within(client: RecordingClient, url: str, own: set[str]) -> httpx.Response:
    """GET, following redirects only within ``own`` origins (the authorization server's): never to an app.

    Not backed off: the status of these pages is what their checks judge (a 5xx is a finding, and a 503 standing in
    for a refusal is one), and the sign-in's own rate limit is the browser's to wait out (login.rate_limit)."""
    response = client.get(url, extensions=NO_BACKOFF)
    for _ in range(MAX_HOPS):
        location = response.headers.get("location")
        if response.status_code not in REDIRECTS or not location:
            break
        nxt = urljoin(str(response.url), location)
        if origin(nxt) not in own:
            break
        response = client.get(nxt, extensions=NO_BACKOFF)
    return response


def unknown_client_request(target: Target) -> AuthorizationRequest:
    """A well-formed authorization request for a client the server does not know: its error page starts nothing."""
    request, _ = standard_request(client_id=UNKNOWN_CLIENT, redirect_uri=target.client.redirect_uri,
                                  scope=target.scopes["full"], aud=target.fhir_base_url)
    return request


def authorize_probes(target: Target, endpoint: str, value: str) -> list[tuple[str, str]]:
    """The authorization request with ``value`` in one parameter at a time: with an unknown client (the error page of
    an untrusted request), with the real client and an unregistered redirect_uri, and with the real client and its
    registered redirect_uri (the error or sign-in page that follows). Each only starts a sign-in, at most."""
    request, _ = standard_request(client_id=target.client.client_id, redirect_uri=target.client.redirect_uri,
                                  scope=target.scopes["full"], aud=target.fhir_base_url)
    unknown = request.but(client_id=UNKNOWN_CLIENT)
    probes: list[tuple[str, AuthorizationRequest]] = [("client_id (unknown client)", request.but(client_id=value))]
    probes += [(f"{name} (unknown client)", unknown.but(**{name: value}))
               for name, _ in unknown.params() if name != "client_id"]
    probes.append(("redirect_uri (unregistered)", request.but(redirect_uri=value)))
    probes += [(name, request.but(**{name: value})) for name in (*(n for n, _ in request.params()
               if n not in ("client_id", "redirect_uri")), "login_hint")]
    return [(f"authorize: {label}", probe.to_url(endpoint)) for label, probe in probes]


def page_probes(documents: list[PageDocument], value: str) -> list[tuple[str, str]]:
    """Each page the browser loaded on the launch, with ``value`` in one query parameter at a time."""
    probes = []
    for document in documents:
        names = [k for k, _ in parse_qsl(urlsplit(document.url).query, keep_blank_values=True)]
        path = urlsplit(document.url).path
        probes += [(f"{path}: {name}", with_param(document.url, name, value)) for name in dict.fromkeys(names)]
    return probes

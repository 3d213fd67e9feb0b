"""The links that page through a search

FHIR R4 http.html §Paging, RFC 6750 §2.3 and RFC 9700 §4.3, with the Safety Checklist and OWASP ASVS V5: the next
links a server hands the member's app are URLs the app, its logs and every proxy on the way keep, so they carry no
access token, session id or other credential (an opaque cursor is fine: it is not a credential by itself, the
token still has to come with it). And a next link is input like any other: requested again with a marker of markup
or a junk value in each of its parameters (the offset or cursor servers keep there), it is answered with a page or
a 4xx, never a server error, never the marker as markup and never a stack trace or a software banner.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from smart_conformance.checks import expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import call, control, disclosure, require
from smart_conformance.http import RecordingClient
from smart_conformance.markup import landed, new_mark, payload
from smart_conformance.members import search_pages
from smart_conformance.redact import known_secrets
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves

CREDENTIAL_PARAMS = frozenset({"access_token", "id_token", "refresh_token", "client_secret", "client_assertion",
                               "password", "session", "sessionid", "session_id", "jsessionid", "sid", "api_key", "apikey",
                               "authorization", "bearer"})
JUNK = {"non-numeric": "abc", "negative": "-1", "SQL-shaped": "1' OR '1'='1' --", "4 KB": "9" * 4096}


def _replaced(url: str, index: int, value: str) -> str:
    """``url`` with the value of its ``index``-th query parameter replaced (the others as they were)."""
    parts = urlsplit(url)
    query = [(k, value if i == index else v) for i, (k, v) in enumerate(parse_qsl(parts.query, keep_blank_values=True))]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _credential_in(url: str, token: str) -> str | None:
    """A credential the link carries: a parameter named for one (access_token, a session id...), the run's token, or
    any other secret this run knows. A page token or cursor (page_token, _getpages, ct) is not one by its name."""
    for name, _value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name.lower() in CREDENTIAL_PARAMS:
            return f"a {name} parameter"
    if any(len(s) >= 8 and s in url for s in {token, *known_secrets()}):
        return "a credential of this run (the access token or another secret) in the URL"
    return None


@pytest.mark.requirement("FHIR-SEC-13", "FHIR-SEC-03", "HTTP-HYG-05", "ASVS-URL-01")
@proves(Fault.PAGING_OFFSET_500, Fault.ERROR_STACK_TRACE, Fault.SERVER_BANNER)
def test_paging_links_hygiene(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """The member's next links (ExplanationOfBenefit?patient=&_count=1, page after page) carry no credential, and the
    first of them, requested again with a markup marker or a junk value in each parameter, is answered without a
    server error, without the marker as markup and without internals."""
    base, pid, token = target.fhir_base_url, target.member.patient_id, launch.token.access_token
    first = control(http, base, "ExplanationOfBenefit", token, params={"patient": pid, "_count": "1"})
    require(first, verdict="judging the member's next links")
    pages = search_pages(http, base, "ExplanationOfBenefit", token, first=first.reply)
    if not pages.links:
        not_applicable(f"ExplanationOfBenefit?patient={pid}&_count=1 has no next link: the member's claims fit on one "
                       "page")
    link = pages.links[0]
    mark = new_mark()
    names = [k for k, _ in parse_qsl(urlsplit(link).query, keep_blank_values=True)]
    with expectations() as check:  # each link, and each tampered parameter, is its own finding
        for url, reply in zip(pages.links, pages.replies[1:], strict=False):
            found = _credential_in(url, token)
            check.expect(found is None, expected="a next link with no credential in it", actual=f"{found}",
                         requirement="ASVS-URL-01", exchange=reply.exchange)
        for index, name in enumerate(names):
            for label, value in {"markup": payload(mark), **JUNK}.items():
                reply = call(http, "GET", _replaced(link, index, value), token=token)
                seen = f"HTTP {reply.status} {reply.response.headers.get('content-type', '(no content type)')}"
                check.expect(reply.status < 500, expected=f"{name} = {label}: a page or a 4xx, not a server error",
                             actual=seen, requirement="FHIR-SEC-13", exchange=reply.exchange)
                for where in landed(reply.response, mark):
                    check.fail(expected=f"{name} = {label}: the marker echoed escaped, or not at all",
                               actual=f"{seen}: {where}", requirement="HTTP-HYG-05", exchange=reply.exchange)
                found = disclosure(reply)
                check.expect(found is None, expected=f"{name} = {label}: no stack trace, framework or version",
                             actual=f"{seen}: {found}", requirement="FHIR-SEC-03", exchange=reply.exchange)

"""Every finding carries the evidence it judged (issue 21 e), never whatever request happened last.

A finding's evidence line and its "Reproduce with" curl are what a payer's engineer runs first. Taken from the test's
last exchange, they often showed a control read (which worked) beside a verdict about another request. Now a check
names its evidence: ``exchange=`` (the request and answer it judged), or ``seen=`` (one redacted line on what it
judged without HTTP: a browser flow, a TLS scan, a cookie). The suites are scanned so that no new call forgets to.
"""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest

from smart_conformance import checks, paths, redact
from smart_conformance.checks import ConformanceFailure, expectations
from smart_conformance.http import Evidence, RecordingClient, collecting, exchange_of

JUDGING = frozenset({"expect", "fail"})  # checks.expect/fail and Expectations.expect/fail (check.expect, ...)
EVIDENCE = frozenset({"exchange", "seen"})


def _unnamed_evidence(file: Path) -> list[str]:
    """file:line of every expect/fail call with ``expected=`` that names neither an exchange nor what was seen."""
    source = file.read_text(encoding="utf-8")
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=str(file))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        keywords = {k.arg for k in node.keywords}
        if name in JUDGING and "expected" in keywords and None not in keywords and not keywords & EVIDENCE:
            segment = (ast.get_source_segment(source, node) or "").split("\n")[0]
            found.append(f"{file.relative_to(paths.suites_dir().parent)}:{node.lineno}: {segment}")
    return found


def test_every_expectation_in_the_suites_names_its_evidence() -> None:
    missing = [line for file in sorted(paths.suites_dir().rglob("*.py")) for line in _unnamed_evidence(file)]
    assert not missing, ("these expect/fail calls pass neither exchange= (the request they judged) nor seen= (one "
                         "line on the non-HTTP evidence):\n" + "\n".join(missing))


def test_the_scan_catches_a_call_without_evidence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "test_x.py").write_text(
        "def test_x(check, reply):\n"
        "    expect(False, expected='a', actual='b')\n"
        "    check.expect(False, expected='a', actual='b', exchange=reply.exchange)\n"
        "    check.fail(expected='a', actual='b')\n"
        "    fail(expected='a', actual='b', seen='TLS scan of host:443')\n", encoding="utf-8")
    monkeypatch.setattr(paths, "suites_dir", lambda: suites)
    assert [line.split(": ")[0] for line in _unnamed_evidence(suites / "test_x.py")] == \
        ["suites/test_x.py:2", "suites/test_x.py:4"]


def _served(status: int) -> RecordingClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"resourceType": "Patient"}, request=request)
    return RecordingClient(transport=httpx.MockTransport(answer))


def test_a_failure_without_evidence_never_borrows_the_last_exchange() -> None:
    evidence = Evidence()
    with collecting(evidence), _served(200) as client:
        client.get("https://fhir.example/Patient/control")  # a control read, unrelated to the verdict
        assert evidence.last is not None
        with pytest.raises(ConformanceFailure) as caught:
            checks.fail(expected="a refusal", actual="HTTP 200", requirement="RFC6749-07")
    failure = caught.value
    assert failure.exchange is None
    assert failure.findings[0].evidence == "" and failure.findings[0].curl == ""
    assert "Patient/control" not in str(failure) and "Reproduce with" not in str(failure)


def test_seen_is_the_evidence_when_no_exchange_was_judged() -> None:
    redact.register_secret("s3cr3t-session-value")
    with pytest.raises(ConformanceFailure) as caught:
        checks.expect(False, expected="cookie sid: Secure", actual="Set-Cookie: sid=…; HttpOnly",
                      requirement="ASVS-SESS-01", seen="the browser received sid=s3cr3t-session-value on a launch")
    finding = caught.value.findings[0]
    assert finding.evidence == "the browser received sid=*** on a launch" and finding.curl == ""
    assert "  Evidence: the browser received sid=*** on a launch" in str(caught.value)
    assert "Reproduce with" not in str(caught.value)


def test_the_judged_exchange_wins_and_travels_on_its_response() -> None:
    with _served(401) as client:
        judged = client.get("https://fhir.example/Patient/other")
        client.get("https://fhir.example/Patient/other")  # same URL and status: matching by URL could pick this
        assert exchange_of(judged) is client.log[0] and client.exchange_for(judged) is client.log[0]
        with checks.citing("RFC6749-07"), pytest.raises(ConformanceFailure) as caught, expectations() as check:
            check.expect(False, expected="a refusal", actual="HTTP 401", exchange=exchange_of(judged),
                         seen="not shown: the exchange is the evidence")
    finding = caught.value.findings[0]
    assert finding.evidence == "GET https://fhir.example/Patient/other -> 401 Unauthorized"
    assert finding.curl.startswith("curl -i -X GET") and "Reproduce with" in str(caught.value)
    assert exchange_of(httpx.Response(200)) is None and exchange_of(None) is None


def test_a_launchs_seen_line_shows_where_the_browser_went_but_no_code_or_secret() -> None:
    from tests.unit.test_launch_outcome import browser, result, spec

    redact.register_secret("member-typed-secret-value")
    redirect = "http://127.0.0.1:8765/callback?code=the-very-code-4711&state=s"
    launch = result(spec(), browser(redirected=True, redirect_url=redact.url(redirect),
                                    params={"code": "the-very-code-4711", "state": "s"}, expect_redirect=True),
                    token_status=400)
    launch.authorization_url = "https://as.example/authorize?client_id=app&code_challenge=x&state=s"
    launch.why = "the page said member-typed-secret-value"
    seen = launch.seen
    assert seen.startswith("browser GET https://as.example/authorize?client_id=app")
    assert "redirected to http://127.0.0.1:8765/callback?code=***&state=s" in seen
    assert "the-very-code-4711" not in seen and "member-typed-secret-value" not in seen
    assert launch.token_exchange is None  # a response no recording client returned has no exchange to show

"""A full launch in headless Chromium (system /usr/bin/chromium via Playwright), redirect captured, not served."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.reference.launcher import FULL_SCOPE, Launcher, pkce_pair, query

CHROMIUM = Path("/usr/bin/chromium")


def test_launch_in_headless_chromium(launcher: Launcher) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("no system Chromium at /usr/bin/chromium")
    verifier, challenge = pkce_pair()
    params = launcher.authorize_params(scope=FULL_SCOPE, state="browser-state", challenge=challenge)
    captured: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()

            def capture(route) -> None:  # type: ignore[no-untyped-def]
                captured.append(route.request.url)
                route.abort()

            # route() sees direct requests; the 303 from the consent POST shows up as a redirected request.
            page.route("http://127.0.0.1:8765/**", capture)
            page.on("request", lambda request: captured.append(request.url)
                    if request.url.startswith("http://127.0.0.1:8765/callback") else None)
            from urllib.parse import urlencode

            page.goto(f"{launcher.srv.issuer}/authorize?{urlencode(params)}")
            page.fill("#username", "alice")
            page.fill("#password", launcher.passwords["alice"])
            page.click("button[type=submit]")
            page.uncheck("input[name=scope][value='patient/Coverage.rs']")
            with page.expect_request(lambda r: r.url.startswith("http://127.0.0.1:8765/callback"), timeout=10000):
                try:
                    page.click("button[name=decision][value=allow]", no_wait_after=True)
                except sync_api.Error:
                    pass  # the failed navigation to the (absent) callback listener may surface as an error
        finally:
            browser.close()
    assert captured, "the redirect to the callback was not seen"
    got = query(captured[0])
    assert got["state"] == "browser-state"
    tokens = launcher.exchange(got["code"], verifier).json()
    assert tokens["patient"] == "pat-alice" and "patient/Coverage.rs" not in tokens["scope"].split()

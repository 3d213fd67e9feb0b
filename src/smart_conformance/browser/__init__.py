"""Drive a payer's own sign-in and consent pages in headless Chromium, from a recipe in the target YAML.

One module per job:

* :mod:`.chromium`: which Chromium runs (Playwright's managed build, the distribution's, or a remote browser named
  by ``SMART_CONFORMANCE_BROWSER_WS`` / ``SMART_CONFORMANCE_CDP_URL``) and starting it;
* :mod:`.recipe`: the login recipe (:class:`Step`, :class:`Recipe`, ``parse_*``, :func:`compose_steps`);
* :mod:`.pinning`: trusting a private CA by verifying each origin in Python and pinning exactly its key;
* :mod:`.steps`: running one step on a page, and why it could not proceed (:class:`LoginStepError`);
* :mod:`.attempt`: one authorization in a fresh context, the redirect captured inside the browser;
* :mod:`.session`: :class:`BrowserSession`, one browser per worker and its relaunches;
* :mod:`.pages`: what the browser saw (:class:`AuthorizationResult`, :class:`PageDocument`, :class:`PageForm`);
* :mod:`.artifacts`: masked screenshots and scrubbed traces.

Every page is screenshotted with password inputs masked; a failing step says which step, on which page, why, and
where its screenshot is, in one line.
"""

from __future__ import annotations

from smart_conformance.browser.artifacts import Screenshot, scrub_trace, take_screenshot
from smart_conformance.browser.chromium import (
                                                BROWSER_WS_ENV,
                                                CDP_URL_ENV,
                                                CHROMIUM_ENV,
                                                BrowserUnavailable,
                                                ChromiumChoice,
                                                RemoteBrowser,
                                                find_chromium,
                                                remote_browser,
)
from smart_conformance.browser.pages import AuthorizationResult, PageDocument, PageForm, SetCookie
from smart_conformance.browser.pages import response_params as _response_params
from smart_conformance.browser.pinning import (
                                                OriginNotVerified,
                                                TlsMode,
                                                verified_spki_sha256,
)
from smart_conformance.browser.recipe import (
                                                DEFAULT_STEP_TIMEOUT_MS,
                                                Recipe,
                                                RecipeError,
                                                Step,
                                                compose_steps,
                                                parse_recipe,
                                                parse_step,
                                                parse_steps,
)
from smart_conformance.browser.session import BrowserSession
from smart_conformance.browser.steps import LoginStepError, SignInBlocked
from smart_conformance.redact import secret_values

__all__ = [
                                                "BROWSER_WS_ENV",
                                                "CDP_URL_ENV",
                                                "CHROMIUM_ENV",
                                                "DEFAULT_STEP_TIMEOUT_MS",
                                                "AuthorizationResult",
                                                "BrowserSession",
                                                "BrowserUnavailable",
                                                "ChromiumChoice",
                                                "LoginStepError",
                                                "OriginNotVerified",
                                                "PageDocument",
                                                "PageForm",
                                                "Recipe",
                                                "RecipeError",
                                                "RemoteBrowser",
                                                "Screenshot",
                                                "SetCookie",
                                                "SignInBlocked",
                                                "Step",
                                                "TlsMode",
                                                "_response_params",
                                                "compose_steps",
                                                "find_chromium",
                                                "parse_recipe",
                                                "parse_step",
                                                "parse_steps",
                                                "remote_browser",
                                                "scrub_trace",
                                                "secret_values",
                                                "take_screenshot",
                                                "verified_spki_sha256",
]

"""Two legitimate shapes of a payer's sign-in (issue 20), driven in the browser against the reference: the member signs
in at an identity provider on an origin of its own (separate-idp-origin), and the authorization server remembers a
member's consent per client (remembered-consent), which prompt=consent shows again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smart_conformance import paths, redact
from smart_conformance.browser import BrowserSession, compose_steps, parse_recipe
from smart_conformance.config import Target, load_target
from smart_conformance.reference import idp
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.reference.variants import (
    REMEMBERED_CONSENT,
    SEPARATE_IDP_ORIGIN,
    SPLIT_ORIGIN_AUTH_SERVER,
    TOTP_MFA,
    TWO_PAGE_SIGN_IN,
    ActiveVariants,
)
from tests.reference.launcher import target_authorize_url

VARIANTS = (SEPARATE_IDP_ORIGIN, SPLIT_ORIGIN_AUTH_SERVER, REMEMBERED_CONSENT)


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    """Three origins (FHIR API, authorization server, identity provider), consent remembered."""
    with ReferenceServer(variants=VARIANTS) as srv:
        yield srv


@pytest.fixture(scope="module")
def payer(server: ReferenceServer) -> Target:
    return load_target(paths.reference_target(), env=server.target_env())


@pytest.fixture(scope="module")
def session(server: ReferenceServer) -> Iterator[BrowserSession]:
    """The browser knows the FHIR and authorization origins only: the identity provider's is met on the way."""
    with BrowserSession(ca_bundle=server.ca_path, origins=server.origins[:2]) as browser:
        yield browser


def authorize(server: ReferenceServer, session: BrowserSession, payer: Target, folder: Path, *,
              member: str = "primary", scope: str | None = None, scenario: str = "approve",
              reuse: bool = False, extra: dict[str, str] | None = None) -> Any:
    recipe = parse_recipe(payer.login)
    return session.authorize(target_authorize_url(server, payer, scope=scope, **(extra or {})), redirect_uri=payer.client.redirect_uri,
                             steps=compose_steps(recipe, scenario), values=payer.members[member].values("member"),
                             artifacts_dir=folder, redact_url=redact.url, redact_text=redact.text,
                             session_key=member, reuse_session=reuse, sign_in_steps=len(recipe.steps))


def test_the_identity_provider_has_its_own_origin(server: ReferenceServer) -> None:
    fhir, auth, provider = server.origins
    assert len({fhir, auth, provider}) == 3 and provider == server.idp_origin
    with httpx.Client(verify=server.ssl_context()) as client:
        config = client.get(f"{server.fhir_base_url}/.well-known/smart-configuration").json()
        assert provider not in str(config)  # not advertised: it serves no OAuth endpoint
        assert client.get(f"{provider}/idp/login?login_challenge=nothing").status_code == 400
        assert client.get(f"{provider}/fhir/metadata").status_code == 404
        assert client.get(f"{auth}/auth/login/return?login_verifier=forged").status_code == 400


def test_sign_in_at_the_identity_provider_then_back(server: ReferenceServer, session: BrowserSession, payer: Target,
                                                    tmp_path: Path) -> None:
    """The sign-in page is the identity provider's; its cookies come from its origin; single sign-on is its
    session: a later authorization in the same browser goes through it without a password."""
    first = authorize(server, session, payer, tmp_path / "first", member="other")
    assert first.code and first.password_submitted, first
    pages = [d.url for d in first.documents]
    assert any(url.startswith(f"{server.idp_origin}/idp/login") for url in pages), pages
    assert any(url.startswith(f"{server.auth_origin}/auth/consent") for url in pages), pages
    cookies = {c.name: c for c in first.cookies}
    for name in (idp.IDP_BROWSER_COOKIE, idp.IDP_SESSION_COOKIE):
        assert cookies[name].url.startswith(server.idp_origin), cookies
        assert {"secure", "httponly"} <= set(cookies[name].attributes), cookies[name]
    assert "__Host-smartref_session" not in cookies  # the authorization server keeps no session of its own
    again = authorize(server, session, payer, tmp_path / "again", member="other", reuse=True)
    assert again.code and again.session_reused and not again.password_submitted, again
    assert not any("/idp/login" in d.url for d in again.documents)  # only a redirect through the provider


def test_the_identity_provider_refuses_a_forged_sign_in(server: ReferenceServer, payer: Target) -> None:
    """A sign-in posted without the form's token and the provider's browser cookie is refused, and a login verifier
    works once, in the browser that began the authorization."""
    alice = payer.members["primary"]
    with httpx.Client(verify=server.ssl_context()) as member, httpx.Client(verify=server.ssl_context()) as forger:
        start = member.get(target_authorize_url(server, payer))
        sign_in = start.headers["location"]
        assert sign_in.startswith(f"{server.idp_origin}/idp/login?login_challenge=")
        handle = httpx.URL(sign_in).params["login_challenge"]
        page = member.get(sign_in)
        assert page.status_code == 200 and 'action="/idp/login"' in page.text
        form = {"login_challenge": handle, "username": alice.username, "password": alice.password}
        assert forger.post(f"{server.idp_origin}/idp/login", data=form).status_code == 403
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert forger.post(f"{server.idp_origin}/idp/login", data={**form, "csrf_token": token}).status_code == 403
        signed_in = member.post(f"{server.idp_origin}/idp/login", data={**form, "csrf_token": token})
        assert signed_in.status_code == 303, signed_in.text
        back = signed_in.headers["location"]
        assert back.startswith(f"{server.auth_origin}/auth/login/return?login_verifier=")
        assert forger.get(back).status_code == 403  # not redeemed: this browser did not begin the authorization
        # (take_login spent it anyway: a verifier is tried once)
        assert member.get(back).status_code == 400


def test_consent_remembered_per_member_and_client(server: ReferenceServer, session: BrowserSession, payer: Target,
                                                  tmp_path: Path) -> None:
    """Once approved, a fresh browser that signs in gets the code without the consent page (its steps skipped because
    the redirect came first, not by a timeout); more scopes, or prompt=consent, show the page again; openid-
    configuration advertises prompt=consent."""
    representative = "representative"
    first = authorize(server, session, payer, tmp_path / "first", member=representative)
    assert first.code and not first.steps_skipped, first
    second = authorize(server, session, payer, tmp_path / "second", member=representative)
    assert second.code and second.password_submitted, second
    assert any("redirect already captured" in s for s in second.steps_skipped), second.steps_skipped
    assert not any("/auth/consent" in d.url for d in second.documents)
    wider = authorize(server, session, payer, tmp_path / "wider", member=representative, scope=payer.scopes["full"])
    assert wider.code and not wider.steps_skipped, wider
    forced = authorize(server, session, payer, tmp_path / "forced", member=representative, scenario="deny",
                       extra={"prompt": "consent"})
    assert forced.params.get("error") == "access_denied" and not forced.code, forced
    with httpx.Client(verify=server.ssl_context()) as client:
        oidc = client.get(f"{server.issuer}/.well-known/openid-configuration").json()
    assert oidc["prompt_values_supported"] == ["consent"]


def test_the_identity_provider_cannot_share_a_server_with_pages_it_does_not_serve() -> None:
    ActiveVariants([SEPARATE_IDP_ORIGIN, TWO_PAGE_SIGN_IN])
    with pytest.raises(ValueError, match="cannot be combined"):
        ActiveVariants([SEPARATE_IDP_ORIGIN, TOTP_MFA])

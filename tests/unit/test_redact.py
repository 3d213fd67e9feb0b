"""Redaction: secrets never leave the process, whatever shape they travel in."""

from __future__ import annotations

from smart_conformance import redact


def test_headers_keep_scheme_hide_credentials() -> None:
    out = dict(redact.headers([("Authorization", "Bearer abc.def.ghi"), ("Cookie", "sid=1"), ("Accept", "x")]))
    assert out == {"Authorization": "Bearer ***", "Cookie": "***", "Accept": "x"}


def test_url_query_and_fragment() -> None:
    url = "https://a.example/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz#access_token=abc123&token_type=bearer"
    out = redact.url(url)
    assert "SplxlOBeZQQYbYS6WxSbIA" not in out and "abc123" not in out and "state=xyz" in out


def test_json_body_secret_fields_and_jwts() -> None:
    body = '{"access_token": "opaque-1", "scope": "openid", "nested": {"refresh_token": "r-1"}, "x": "eyJhbGciOi.eyJzdWIiOi.sig"}'
    out = redact.body(body, "application/json")
    assert "opaque-1" not in out and "r-1" not in out and "eyJhbGciOi" not in out and '"scope": "openid"' in out


def test_form_body() -> None:
    out = redact.body("grant_type=authorization_code&code=abc&client_secret=zzz&code_verifier=vvv",
                      "application/x-www-form-urlencoded")
    assert "abc" not in out and "zzz" not in out and "vvv" not in out and "grant_type=authorization_code" in out


def test_registered_values_scrubbed_in_free_text() -> None:
    redact.register_secret("member-password-42")
    assert redact.text("login failed for member-password-42!") == "login failed for ***!"


def test_learn_registers_secret_fields() -> None:
    redact.learn({"access_token": "tok-learned-1", "patient": "p1"})
    redact.learn("code=code-learned-2&state=s")
    assert redact.text("tok-learned-1 code-learned-2 p1") == "*** *** p1"


def test_basic_credentials_in_text() -> None:
    assert redact.text("Authorization: Basic YWJjOmRlZg==") == "Authorization: Basic ***"


def test_fhir_codes_are_not_secrets() -> None:
    """In FHIR JSON "code" is a coded value (read, plan…), not an authorization code: it must stay readable."""
    body = '{"resourceType": "CapabilityStatement", "interaction": [{"code": "read"}], "status": {"code": "plan"}}'
    redact.learn({"coding": [{"code": "plan"}]})
    out = redact.body(body, "application/fhir+json")
    assert '"code": "read"' in out and '"code": "plan"' in out
    assert redact.text("ExplanationOfBenefit") == "ExplanationOfBenefit"


def test_one_vocabulary_names_every_secret() -> None:
    """Target keys (refused as literals), recipe placeholders (masked in steps and traces) and wire fields (scrubbed
    from evidence) are judged by the same names."""
    for name in ("client_secret", "password", "totp_secret", "private_key", "member.password", "member.totp_secret",
                 "refresh_token", "code", "client_assertion", "passcode"):
        assert redact.is_secret_field(name), name
    for name in ("member.username", "member.patient_id", "client_key", "client_id", "username"):
        assert not redact.is_secret_field(name), name
    values = {"member.username": "alice", "member.password": "pw-123", "member.totp_secret": "JBSWY3DP"}
    assert redact.secret_values(values, ["c0de-1", None]) == {"pw-123", "JBSWY3DP", "c0de-1"}

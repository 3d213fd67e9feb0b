"""The recipe keys of issue 20: the ``totp`` step (secret never literal), the ``lockout`` and ``out_of_band_code``
markers and the back-off budget, each bad input a clear error naming step, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smart_conformance import paths, redact
from smart_conformance.browser.recipe import (
    DEFAULT_LOCKOUT_TEXTS,
    RecipeError,
    parse_recipe,
    parse_step,
)
from smart_conformance.browser.steps import totp_code
from smart_conformance.config import ConfigError, load_target
from smart_conformance.redact import MASK, SecretValue

RFC_6238_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # "12345678901234567890", RFC 6238 Appendix B


def test_totp_defaults_to_the_members_secret_and_the_common_parameters() -> None:
    step = parse_step({"totp": {"selector": "#otp"}}, "login.steps[3]")
    assert step.value == "${member.totp_secret}"
    assert step.totp is not None and (step.totp.digits, step.totp.period, step.totp.algorithm) == (6, 30, "SHA1")
    resolved = step.resolve({"member.totp_secret": RFC_6238_SECRET})
    assert isinstance(resolved.value, SecretValue) and RFC_6238_SECRET in redact.known_secrets()
    assert totp_code(resolved, 59) == "287082"  # RFC 6238 Appendix B, T=59, truncated to 6 digits
    assert totp_code(resolved, 59) in redact.known_secrets()
    assert RFC_6238_SECRET not in resolved.as_written() and MASK in resolved.as_written()


def test_totp_parameters_are_configurable() -> None:
    step = parse_step({"totp": {"selector": "#otp", "secret": "${member.totp_secret}", "digits": 8,
                                "algorithm": "sha256", "period": 60, "submit": "#go"}}, "s")
    assert step.totp is not None and (step.totp.digits, step.totp.algorithm, step.totp.submit) == (8, "SHA256", "#go")
    resolved = step.resolve({"member.totp_secret": RFC_6238_SECRET})
    assert len(totp_code(resolved)) == 8


@pytest.mark.parametrize(("raw", "key", "fix"), [
    ({"totp": {"selector": "#otp", "secret": "JBSWY3DPEHPK3PXPJBSWY3DP"}}, "totp.secret", "${SOME_ENV_VAR}"),
    ({"totp": {"secret": "${member.totp_secret}"}}, "totp.selector", "selector"),
    ({"totp": {"selector": "#otp", "digits": 4}}, "totp.digits", "digits: 6"),
    ({"totp": {"selector": "#otp", "algorithm": "MD5"}}, "totp.algorithm", "SHA1"),
    ({"totp": {"selector": "#otp", "perod": 30}}, "totp.perod", "period"),
    ({"totp": {"selector": "#otp", "secret": {"file": "/nonexistent/totp"}}}, "totp.secret.file", "readable file"),
])
def test_totp_errors_name_step_key_and_fix(raw: dict, key: str, fix: str) -> None:
    with pytest.raises(RecipeError) as raised:
        parse_step(raw, "login.steps[3]")
    assert raised.value.where == "login.steps[3]" and raised.value.key == key and fix in raised.value.fix
    assert "JBSWY3DPEHPK3PXP" not in str(raised.value)


def test_a_secret_that_is_not_base32_is_named_without_showing_it() -> None:
    step = parse_step({"totp": {"selector": "#otp"}}, "login.steps[3]").resolve({"member.totp_secret": "not base32!"})
    with pytest.raises(RecipeError, match="totp.secret: the secret is not base32") as raised:
        totp_code(step)
    assert "not base32!" not in str(raised.value)


def test_totp_secret_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "totp.txt"
    secret_file.write_text(RFC_6238_SECRET + "\n")
    step = parse_step({"totp": {"selector": "#otp", "secret": {"file": str(secret_file)}}}, "s")
    assert isinstance(step.value, SecretValue) and step.value == RFC_6238_SECRET and repr(step.value) == repr(MASK)


def _target(tmp_path: Path, totp: dict) -> Path:
    doc = yaml.safe_load(paths.reference_target().read_text())
    for key in ("attestations", "backend_client", "bulk", "provider_access", "payer_to_payer"):
        doc.pop(key, None)
    doc["login"]["steps"].append({"totp": totp})
    out = tmp_path / "payer.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def _env(tmp_path: Path) -> dict[str, str]:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    env = {name: "x" for name in ("SMART_REFERENCE_CLIENT_ID", "SMART_REFERENCE_CLIENT_SECRET",
                                  "SMART_REFERENCE_OTHER_CLIENT_ID", "SMART_REFERENCE_OTHER_CLIENT_SECRET",
                                  "SMART_REFERENCE_MEMBER_USERNAME", "SMART_REFERENCE_MEMBER_PASSWORD",
                                  "SMART_REFERENCE_OTHER_MEMBER_USERNAME", "SMART_REFERENCE_OTHER_MEMBER_PASSWORD",
                                  "SMART_REFERENCE_REP_USERNAME", "SMART_REFERENCE_REP_PASSWORD",
                                  "SMART_REFERENCE_BACKEND_CLIENT_ID", "SMART_REFERENCE_BACKEND_KID",
                                  "SMART_REFERENCE_OTHER_BACKEND_CLIENT_ID", "SMART_REFERENCE_OTHER_BACKEND_KID")}
    return {**env, "SMART_REFERENCE_FHIR_BASE_URL": "https://payer.example/fhir", "SMART_REFERENCE_CA_BUNDLE": str(ca)}


def test_target_file_refuses_a_literal_totp_secret(tmp_path: Path) -> None:
    file = _target(tmp_path, {"selector": "#otp", "secret": "JBSWY3DPEHPK3PXPJBSWY3DP"})
    with pytest.raises(ConfigError) as raised:
        load_target(file, env=_env(tmp_path))
    assert raised.value.key == "login.steps[3].totp.secret" and "${SOME_ENV_VAR}" in raised.value.fix
    assert str(file) in str(raised.value) and "JBSWY3DP" not in str(raised.value)


def test_target_file_reads_an_env_totp_secret_as_a_secret(tmp_path: Path) -> None:
    file = _target(tmp_path, {"selector": "#otp", "secret": "${PAYER_TOTP_SECRET}"})
    target = load_target(file, env={**_env(tmp_path), "PAYER_TOTP_SECRET": RFC_6238_SECRET})
    assert target.login is not None
    step = parse_recipe(target.login).steps[-1]
    assert isinstance(step.value, SecretValue) and step.value == RFC_6238_SECRET
    assert RFC_6238_SECRET in redact.known_secrets() and RFC_6238_SECRET not in step.as_written()


def test_lockout_and_out_of_band_markers() -> None:
    recipe = parse_recipe({"steps": [], "lockout": {"text": "Konto gesperrt", "selector": "#locked"},
                           "out_of_band_code": False, "rate_limit": {"max_wait_s": 5}})
    assert recipe.guards.lockout.texts == ("konto gesperrt",) and recipe.guards.lockout.selectors == ("#locked",)
    assert recipe.guards.out_of_band.texts == () and recipe.guards.max_backoff_s == 5
    defaults = parse_recipe({"steps": []}).guards
    assert defaults.lockout.texts == DEFAULT_LOCKOUT_TEXTS and defaults.max_backoff_s == 30
    assert any("sent" in text for text in defaults.out_of_band.texts)


@pytest.mark.parametrize(("login", "key"), [
    ({"steps": [], "lockout": {}}, "lockout"),
    ({"steps": [], "lockout": {"txt": "locked"}}, "lockout.txt"),
    ({"steps": [], "out_of_band_code": {"text": [""]}}, "out_of_band_code.text"),
    ({"steps": [], "rate_limit": {"max_wait_s": -1}}, "rate_limit.max_wait_s"),
])
def test_marker_errors_name_the_key(login: dict, key: str) -> None:
    with pytest.raises(RecipeError) as raised:
        parse_recipe(login)
    assert raised.value.key == key and raised.value.fix

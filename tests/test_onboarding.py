"""The first hour of a payer: init-target writes a target file a run accepts unchanged, a Playwright codegen recording
becomes the sign-in recipe, doctor finds what is missing (with the fix), and the CI templates' commands run."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from smart_conformance import codegen, doctor, init_target, paths
from smart_conformance.config import load_target
from smart_conformance.reference.server import ReferenceServer

CI_DIR = paths.project_root() / "examples" / "ci"

RECORDING = '''\
import re
from playwright.sync_api import Playwright, sync_playwright, expect


def run(playwright: Playwright) -> None:
    browser = playwright.chromium.launch(headless=False)
    context = browser.new_context()
    page = context.new_page()
    page.goto("https://payer.example/auth/authorize?response_type=code&client_id=abc")
    page.get_by_label("Username").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").click()
    page.get_by_label("Password").fill("Recorded-Pa55word")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("checkbox", name="patient/Coverage.rs").uncheck()
    page.get_by_role("button", name="Allow").click()

    # ---------------------
    context.close()
    browser.close()


with sync_playwright() as playwright:
    run(playwright)
'''


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smart_conformance.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=str(cwd) if cwd else None, timeout=300, check=False)


def target_env(server: ReferenceServer) -> dict[str, str]:
    """What a payer's CI sets from its secrets for a file init-target wrote (prefix SMART_TARGET)."""
    ref = server.target_env()
    return {"SMART_TARGET_CLIENT_ID": ref["SMART_REFERENCE_CLIENT_ID"],
            "SMART_TARGET_CLIENT_SECRET": ref["SMART_REFERENCE_CLIENT_SECRET"],
            "SMART_TARGET_MEMBER_USERNAME": ref["SMART_REFERENCE_MEMBER_USERNAME"],
            "SMART_TARGET_MEMBER_PASSWORD": ref["SMART_REFERENCE_MEMBER_PASSWORD"],
            "SMART_TARGET_MEMBER_PATIENT_ID": "pat-alice",
            "SMART_TARGET_OTHER_MEMBER_USERNAME": ref["SMART_REFERENCE_OTHER_MEMBER_USERNAME"],
            "SMART_TARGET_OTHER_MEMBER_PASSWORD": ref["SMART_REFERENCE_OTHER_MEMBER_PASSWORD"],
            "SMART_TARGET_OTHER_MEMBER_PATIENT_ID": "pat-bob"}


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def initialised(server: ReferenceServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """targets/staging.yaml in a fresh folder, written by init-target from the reference's discovery and a
    codegen recording of its sign-in."""
    root = tmp_path_factory.mktemp("payer-repo")
    (root / "signin.py").write_text(RECORDING)
    out = root / "targets" / "staging.yaml"
    proc = cli("init-target", server.fhir_base_url, "--ca-bundle", str(server.ca_path), "--output", str(out),
               "--from-codegen", str(root / "signin.py"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


# --- init-target ----------------------------------------------------------------------------------------------------

def test_init_target_file_validates_and_holds_no_secret(initialised: Path, server: ReferenceServer) -> None:
    env = target_env(server)
    target = load_target(initialised, env)  # schema-valid, secrets only as ${ENV}
    text = initialised.read_text()
    for name in env:
        assert f"${{{name}}}" in text
    for value in (env["SMART_TARGET_CLIENT_SECRET"], env["SMART_TARGET_MEMBER_PASSWORD"], "Recorded-Pa55word"):
        assert value not in text
    assert target.fhir_base_url == server.fhir_base_url and target.smart_version == "2"
    assert target.tls.ca_bundle == server.ca_path.resolve()
    assert target.client.auth_method == "client_secret_basic"
    advertised = set(json.loads(_get(server, "/fhir/.well-known/smart-configuration"))["scopes_supported"])
    for scopes in target.scopes.values():
        assert set(scopes.split()) <= advertised, scopes
    assert "patient/ExplanationOfBenefit.rs" in target.scopes["full"].split()
    assert "# How to record the sign-in recipe" in text and "playwright codegen" in text


def _get(server: ReferenceServer, path: str) -> str:
    import httpx

    return httpx.get(server.origin + path, verify=server.ssl_context()).text


def test_converted_recording_signs_in(initialised: Path, server: ReferenceServer, tmp_path: Path) -> None:
    """The recipe converted from codegen (get_by_label / get_by_role locators) drives the real sign-in and consent.
    One launch (plus its positive control): the slowest test here, a few seconds."""
    proc = cli("run", "--target", str(initialised), "--suite", "launch", "--reports", str(tmp_path / "r"),
               "--", "-k", "test_standalone_launch_succeeds", env=target_env(server))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_init_target_errors_are_one_line(tmp_path: Path, server: ReferenceServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    down = cli("init-target", f"https://127.0.0.1:{closed}/fhir", "--output", str(tmp_path / "a.yaml"))
    assert down.returncode == 3 and "cannot connect" in down.stderr and "Fix:" in down.stderr
    assert down.stderr.count("\n") == 1 and "Traceback" not in down.stderr + down.stdout
    assert not (tmp_path / "a.yaml").exists()
    with pytest.raises(init_target.InitError, match="--ca-bundle") as untrusted:
        init_target.write(server.fhir_base_url, tmp_path / "b.yaml")
    assert untrusted.value.unreachable
    (tmp_path / "c.yaml").write_text("keep me")
    with pytest.raises(init_target.InitError, match="--force"):
        init_target.write(server.fhir_base_url, tmp_path / "c.yaml", ca_bundle=server.ca_path)
    assert (tmp_path / "c.yaml").read_text() == "keep me"
    (tmp_path / "bad.py").write_text("page.click(")
    with pytest.raises(init_target.InitError, match="bad.py:1"):
        init_target.write(server.fhir_base_url, tmp_path / "d.yaml", ca_bundle=server.ca_path,
                          from_codegen=tmp_path / "bad.py")


# --- the codegen converter ------------------------------------------------------------------------------------------

def test_codegen_recording_becomes_recipe_steps() -> None:
    recipe = codegen.convert(RECORDING)
    assert recipe.steps == [
        {"fill": {"selector": 'internal:label="Username"i', "value": "${member.username}"}},
        {"fill": {"selector": 'internal:label="Password"i', "value": "${member.password}"}},
        {"click": 'internal:role=button[name="Sign in"i]'},
    ]
    assert recipe.approve == [{"click": 'internal:role=button[name="Allow"i]'}]
    assert recipe.untick == [{"uncheck": 'internal:role=checkbox[name="${scope}"i]'}]


def test_codegen_older_and_async_styles() -> None:
    source = '''
async def test_sign_in(page):
    await page.goto("https://payer.example/authorize?x=1")
    await page.fill("#user", "member-7")
    await page.fill("input[name=pwd]", "hunter2")
    await page.locator("form").get_by_role("button", name="Continue", exact=True).first.click()
    await page.wait_for_url("**/consent**")
    await expect(page.get_by_text("Share your records")).to_be_visible()
    await page.get_by_test_id("approve").press("Enter")
    await page.mouse.click(1, 2)
'''
    recipe = codegen.convert(source)
    assert recipe.steps == [
        {"fill": {"selector": "#user", "value": "${member.username}"}},
        {"fill": {"selector": "input[name=pwd]", "value": "${member.password}"}},
        {"click": 'form >> internal:role=button[name="Continue"s] >> nth=0'},
    ]
    assert recipe.approve == [{"wait_for": {"url": "**/consent**"}},
                              {"wait_for": {"selector": 'internal:text="Share your records"i'}},
                              {"press": {"selector": 'internal:testid=[data-testid="approve"s]', "key": "Enter"}}]
    assert any("mouse.click" in note for note in recipe.notes)
    assert "hunter2" not in repr(recipe) and "member-7" not in repr(recipe)


def test_codegen_never_keeps_a_typed_password() -> None:
    """An unrecognised second field is taken for the password; a one-time code is dropped with a note."""
    recipe = codegen.convert('page.fill("#f1", "member-9")\npage.fill("#f2", "Typed-Secret-1")\n'
                             'page.fill("#otp", "123456")\npage.click("#go")\n')
    assert [s["fill"]["value"] for s in recipe.steps if "fill" in s] == ["${member.username}", "${member.password}"]
    assert "Typed-Secret-1" not in repr(recipe) and "123456" not in repr(recipe)
    assert any("#otp" in note and "hook" in note for note in recipe.notes)


def test_codegen_without_actions_is_an_error() -> None:
    with pytest.raises(codegen.CodegenError, match="no page actions"):
        codegen.convert("print('hello')\n")


# --- doctor ---------------------------------------------------------------------------------------------------------

def test_doctor_names_each_problem_with_its_fix(tmp_path: Path, server: ReferenceServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = doctor.diagnose(tmp_path / "nope.yaml", env={}, environment=False)
    assert [f.status for f in missing if f.check == "config"] == ["problem"]
    reference = paths.reference_target()
    unset = doctor.check_target(reference, {})[0]
    assert "SMART_REFERENCE_CLIENT_SECRET" in unset[0].detail and "SMART_REFERENCE_MEMBER_PASSWORD" in unset[0].detail
    assert unset[0].fix.startswith("export ")
    env = {**server.target_env(), "SMART_REFERENCE_CA_BUNDLE": ""}  # no CA bundle: the private CA is not trusted
    (tmp_path / "ref.yaml").write_text(reference.read_text().replace("attestations: ../", "# "))
    _, target = doctor.check_target(tmp_path / "ref.yaml", env)
    untrusted = [f for f in doctor.check_reachability(target) if f.status == "problem"]
    assert untrusted and all("tls.ca_bundle" in f.fix for f in untrusted), untrusted
    (tmp_path / "garbage.yaml").write_text("name: [\n")
    assert doctor.main(str(tmp_path / "garbage.yaml"), environment=False) == 1
    out = capsys.readouterr().out
    assert "not valid YAML" in out and "fix:" in out and "Traceback" not in out


# --- the CI templates -----------------------------------------------------------------------------------------------

def template_commands() -> dict[str, list[str]]:
    """The smart-conformance command lines of each template's run steps, as written."""
    github = yaml.safe_load((CI_DIR / "github-actions.yml").read_text())
    gitlab = yaml.safe_load((CI_DIR / "gitlab-ci.yml").read_text())
    gh = [step["run"].strip() for job in github["jobs"].values() for step in job["steps"] if "run" in step]
    job = gitlab["smart-conformance"]
    gl = [line.strip() for key in ("before_script", "script", "after_script") for line in job.get(key, [])]
    return {name: [c for c in cmds if "smart-conformance " in c] for name, cmds in (("github", gh), ("gitlab", gl))}


def test_ci_templates_commands_run(initialised: Path, server: ReferenceServer, tmp_path: Path) -> None:
    """Both templates run the same commands (doctor, run, report); each runs as written in a checkout-shaped folder
    against the reference, the suites narrowed to discovery through the templates' own SMART_CONFORMANCE_ARGS.

    This is also init-target's promise: the file it wrote passes `run --suite discovery` unchanged, with only the
    environment variables set; and doctor's: `doctor --target` exits 0 on this bootstrapped checkout against the
    running reference (its environment checks, browser and Allure CLI, are all of `doctor` without --target)."""
    commands = template_commands()
    assert commands["github"] == commands["gitlab"] and len(commands["github"]) == 3, commands
    for command in commands["github"]:
        assert "${{" not in command and shlex.split(command)[0] == ".venv/bin/smart-conformance"
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {**os.environ, **target_env(server), "SMART_TARGET_FILE": str(initialised),
           "SMART_CONFORMANCE_ARGS": "--suite discovery"}
    if not (tmp_path / ".venv" / "bin" / "smart-conformance").exists():
        pytest.skip("the venv has no smart-conformance entry point")
    try:
        from smart_conformance.report.html import AllureUnavailable, find_allure

        find_allure()
        allure = True
    except AllureUnavailable:
        allure = False
    for command in commands["github"]:
        proc = subprocess.run(["bash", "-e", "-c", command], capture_output=True, text=True, env=env,
                              cwd=str(tmp_path), timeout=300, check=False)
        if " report " in command and not allure:
            assert proc.returncode == 2 and "install" in proc.stderr
            continue
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
        if " doctor " in command:
            assert "ok      browser" in proc.stdout and "ok      tls" in proc.stdout, proc.stdout
    assert (tmp_path / "reports" / "junit.xml").is_file()
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    (totals,) = [t["totals"] for t in summary["targets"].values()]
    assert totals["passed"] > 0 and totals["failed"] == totals["broken"] == 0, totals
    if allure:
        assert (tmp_path / "reports" / "html" / "index.html").is_file()


def test_init_target_survives_odd_documents(tmp_path: Path) -> None:
    """Whatever shape the server's documents have, init-target writes a loadable file, and nothing the server sent
    can add a key to it (server text only ever lands in one-line comments)."""
    import httpx

    from smart_conformance.smart import discovery

    def doc(url: str, body: object) -> discovery.Document:
        return discovery.Document(url, 200, "application/json", body, None, None, httpx.Headers())

    base = "https://payer.example/fhir"
    odd = {"authorization_endpoint": "https://payer.example/authorize\nclient_secret: leaked",
           "token_endpoint": "https://payer.example/token\u2028tls: {insecure: true}",
           "capabilities": "launch-standalone", "scopes_supported": 7, "token_endpoint_auth_methods_supported": {},
           "code_challenge_methods_supported": ["S256"]}
    statement = doc(base + "/metadata", {"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1\nname: x",
                                         "rest": [{"mode": "server", "resource": 5}, "junk"], "instantiates": 3})
    found = discovery.discover(doc(base + "/.well-known/smart-configuration", odd), statement)
    assert found is not None
    detected = init_target._decide(base, found, statement)
    text = init_target.render(detected, name="odd", prefix="ODD", ca_bundle=None)
    raw = yaml.safe_load(text)
    assert raw["name"] == "odd" and "client_secret" not in raw and "insecure" not in raw["tls"]
    env = {name: "x" for name in init_target.env_names("ODD").values()}
    (tmp_path / "odd.yaml").write_text(text)
    assert load_target(tmp_path / "odd.yaml", env).scopes["full"]

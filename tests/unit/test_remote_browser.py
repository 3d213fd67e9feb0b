"""A browser that already runs elsewhere (issue 12): ``SMART_CONFORMANCE_CDP_URL`` (a Chromium's DevTools endpoint,
Playwright's ``connect_over_cdp``) or ``SMART_CONFORMANCE_BROWSER_WS`` (a Playwright server, ``connect``) make the
harness use it instead of launching one.

A private CA stays pinned, never ignored: the harness cannot give its key pins to a browser it did not start over CDP,
so that browser must trust the target itself (started with the pins, or the CA in its store), and when it does not,
the failure says so with the pins to start it with. Each "remote" browser here is a local Chromium on 127.0.0.1, a
free port, started and stopped by the test.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from smart_conformance import paths
from smart_conformance.browser import (
    BROWSER_WS_ENV,
    CDP_URL_ENV,
    BrowserSession,
    BrowserUnavailable,
    LoginStepError,
    find_chromium,
    remote_browser,
    verified_spki_sha256,
)
from smart_conformance.browser.chromium import SYSTEM_CHROMIUM_ARGS, pin_arg
from smart_conformance.config import load_target
from smart_conformance.launcher import Launcher
from smart_conformance.plugin import build_client
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.smart.launch import LaunchOutcome

START_TIMEOUT = 30.0


# --- configuration: which remote, from the environment ---------------------------------------------------------------

def test_no_variable_means_a_local_launch() -> None:
    assert remote_browser({}) is None


def test_each_variable_names_its_kind() -> None:
    ws = remote_browser({BROWSER_WS_ENV: "ws://grid:3000/"})
    cdp = remote_browser({CDP_URL_ENV: "http://127.0.0.1:9222"})
    assert ws is not None and ws.kind == "playwright-server" and ws.can_pin
    assert cdp is not None and cdp.kind == "cdp" and not cdp.can_pin


@pytest.mark.parametrize(("env", "words"), [
    ({BROWSER_WS_ENV: "ws://a/", CDP_URL_ENV: "http://b"}, "set only one of them"),
    ({BROWSER_WS_ENV: "http://grid:3000"}, "not a ws:// or wss:// URL"),
    ({CDP_URL_ENV: "127.0.0.1:9222"}, "not an http(s):// or ws(s):// URL"),
])
def test_a_bad_value_is_a_clear_error(env: dict[str, str], words: str) -> None:
    with pytest.raises(BrowserUnavailable, match="Fix:") as caught:
        remote_browser(env)
    assert words in str(caught.value)


def test_an_unreachable_remote_says_which_variable(tmp_path: Path) -> None:
    with pytest.raises(BrowserUnavailable) as caught, BrowserSession(env={CDP_URL_ENV: "http://127.0.0.1:9"}):
        pass
    assert "could not be reached" in str(caught.value) and CDP_URL_ENV in str(caught.value)


# --- remote browsers against the reference server --------------------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def pins(server: ReferenceServer) -> list[str]:
    """The reference's leaf keys, verified in Python against its CA: what the remote browser is started with."""
    out = []
    for origin in server.origins:
        parts = urlsplit(origin)
        out.append(verified_spki_sha256(parts.hostname or "", parts.port or 443, server.ca_path))
    return out


def _poll(ready: Callable[[], str | None], process: subprocess.Popen[bytes], what: str) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    pause = threading.Event()
    while time.monotonic() < deadline:
        found = ready()
        if found:
            return found
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} during start-up")
        pause.wait(0.05)
    raise RuntimeError(f"{what} did not start within {START_TIMEOUT}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group the test started (``python -m playwright`` runs the server in a node child)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture()
def cdp_chromium() -> Iterator[Callable[[list[str]], str]]:
    """Start a local Chromium with a DevTools endpoint on 127.0.0.1 (a free port, chosen by Chromium: port 0)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(extra_args: list[str]) -> str:
        profile = Path(tempfile.mkdtemp(prefix="remote-chromium-"))
        choice = find_chromium()
        executable = choice.path or ""
        process = subprocess.Popen(
            [executable, "--headless=new", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", *SYSTEM_CHROMIUM_ARGS, *extra_args, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(process)
        active = profile / "DevToolsActivePort"

        def port() -> str | None:
            lines = active.read_text().splitlines() if active.is_file() else []
            return lines[0] if lines and lines[0].isdigit() else None

        return f"http://127.0.0.1:{_poll(port, process, 'the DevTools Chromium')}"

    yield start
    for process in started:
        _stop(process)


@pytest.fixture()
def playwright_server(tmp_path: Path) -> Iterator[Callable[[list[str]], str]]:
    """Start a Playwright browser server (``playwright launch-server``) on 127.0.0.1 and a free port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(extra_args: list[str]) -> str:
        choice = find_chromium()
        config = tmp_path / f"server-{len(started)}.json"
        config.write_text(json.dumps({"host": "127.0.0.1", "port": 0, "headless": True,
                                      "executablePath": choice.path, "args": [*choice.launch_args, *extra_args]}))
        process = subprocess.Popen([sys.executable, "-m", "playwright", "launch-server", "--browser", "chromium",
                                    "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        started.append(process)
        assert process.stdout is not None
        stdout = process.stdout
        seen = bytearray()

        def endpoint() -> str | None:
            while select.select([stdout], [], [], 0)[0]:
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    break
                seen.extend(chunk)
            for line in seen.decode(errors="replace").splitlines():
                if line.startswith("ws://"):
                    return line.strip()
            return None

        return _poll(endpoint, process, "the Playwright server")

    yield start
    for process in started:
        _stop(process)


def launcher_through(server: ReferenceServer, env: dict[str, str], stack: list[Callable[[], Any]]) -> Launcher:
    target = load_target(paths.reference_target(), {**os.environ, **server.target_env()})
    http = build_client(target)
    stack.append(http.close)
    config = http.get(target.fhir_base_url + "/.well-known/smart-configuration").json()
    session = BrowserSession(ca_bundle=target.tls.ca_bundle, env=env)
    session.start()
    stack.append(session.close)
    return Launcher(target, http, session, config, Path(tempfile.mkdtemp(prefix="remote-browser-")))


@pytest.fixture()
def closing() -> Iterator[list[Callable[[], Any]]]:
    stack: list[Callable[[], Any]] = []
    yield stack
    for close in reversed(stack):
        close()


def test_launch_through_a_chromium_reached_over_cdp(server: ReferenceServer, pins: list[str],
                                                    cdp_chromium: Callable[[list[str]], str],
                                                    closing: list[Callable[[], Any]]) -> None:
    """The remote Chromium trusts the reference's CA by the keys it was started with: a full launch reaches tokens,
    in the system-trust mode (the harness pinned nothing there) and without a local launch."""
    url = cdp_chromium(pin_arg(pins))
    launcher = launcher_through(server, {CDP_URL_ENV: url}, closing)
    result = launcher.launch()
    assert result.outcome is LaunchOutcome.TOKENS, result.why
    assert result.browser.tls_mode == "system-trust" and launcher.browser.launches == 1
    assert launcher.browser.describe() == f"remote cdp {CDP_URL_ENV}={url}"


def test_a_cdp_chromium_that_does_not_trust_the_ca_names_the_pins(server: ReferenceServer, pins: list[str],
                                                                  cdp_chromium: Callable[[list[str]], str],
                                                                  tmp_path: Path) -> None:
    """No ignore-certificate-errors fallback on a remote browser: the refusal is reported, with the fix."""
    url = cdp_chromium([])
    with BrowserSession(ca_bundle=server.ca_path, env={CDP_URL_ENV: url}) as session, \
            pytest.raises(LoginStepError) as caught:
        session.authorize(server.fhir_base_url + "/metadata", redirect_uri="http://127.0.0.1:9/cb",
                          artifacts_dir=tmp_path, step_timeout_ms=3000)
    message = str(caught.value)
    assert "ERR_CERT_AUTHORITY_INVALID" in message, message
    assert f"it verifies against {server.ca_path}" in message and CDP_URL_ENV in message, message
    assert f"--ignore-certificate-errors-spki-list={','.join(sorted(pins))}" in message, message


def test_launch_through_a_playwright_server(server: ReferenceServer, pins: list[str],
                                            playwright_server: Callable[[list[str]], str],
                                            closing: list[Callable[[], Any]]) -> None:
    url = playwright_server(pin_arg(pins))
    launcher = launcher_through(server, {BROWSER_WS_ENV: url}, closing)
    result = launcher.launch()
    assert result.outcome is LaunchOutcome.TOKENS, result.why
    assert result.browser.tls_mode == "spki-pin"


def test_a_playwright_server_that_drops_the_pins_names_the_fix(server: ReferenceServer,
                                                               playwright_server: Callable[[list[str]], str],
                                                               tmp_path: Path) -> None:
    url = playwright_server([])
    with BrowserSession(ca_bundle=server.ca_path, env={BROWSER_WS_ENV: url}) as session, \
            pytest.raises(LoginStepError) as caught:
        session.authorize(server.fhir_base_url + "/metadata", redirect_uri="http://127.0.0.1:9/cb",
                          artifacts_dir=tmp_path, step_timeout_ms=3000)
    message = str(caught.value)
    assert "ERR_CERT_AUTHORITY_INVALID" in message and "did not apply the harness's pin" in message, message
    assert "--unsafe" in message, message

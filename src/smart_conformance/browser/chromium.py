"""Which Chromium runs the sign-in, and how it is started: Playwright's managed build, the distribution's, or a
browser that already runs elsewhere (a Playwright server or a Chromium with a DevTools endpoint).

A remote browser is Playwright's own ``connect`` / ``connect_over_cdp``: nothing of ours runs on the other side.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Playwright is imported lazily (inside functions) so recipe parsing works, and its errors read well, without it.

SYSTEM_CHROMIUM_PATHS: tuple[str, ...] = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ENV = "SMART_CONFORMANCE_CHROMIUM"
# A remote browser instead of a local launch: a Playwright server's ws endpoint (``playwright run-server``,
# ``launchServer``, a grid speaking Playwright's protocol), or the DevTools endpoint of a running Chromium.
BROWSER_WS_ENV = "SMART_CONFORMANCE_BROWSER_WS"
CDP_URL_ENV = "SMART_CONFORMANCE_CDP_URL"
# A distribution Chromium runs as root in containers and CI: no sandbox, no GPU, no background chatter.
SYSTEM_CHROMIUM_ARGS: tuple[str, ...] = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                         "--disable-component-update", "--no-first-run")
REMOTE_CONNECT_TIMEOUT_MS = 30_000

ChromiumKind = Literal["managed", "system", "env"]
RemoteKind = Literal["playwright-server", "cdp"]


class BrowserUnavailable(RuntimeError):
    """No Chromium that Playwright can drive: the message says how to get one."""


@dataclass(frozen=True)
class ChromiumChoice:
    """Which Chromium will run. ``path`` None means "Playwright's managed build, at its default place"."""

    path: str | None
    kind: ChromiumKind

    @property
    def launch_args(self) -> tuple[str, ...]:
        return () if self.kind == "managed" else SYSTEM_CHROMIUM_ARGS

    def describe(self) -> str:
        return f"{self.kind} {self.path or '(playwright default)'}"


@dataclass(frozen=True)
class RemoteBrowser:
    """A browser that runs elsewhere, named by an environment variable.

    ``can_pin``: whether launch arguments (the private CA's key pins) reach it. A Playwright server launches a
    browser per connection and applies the client's arguments when it allows them (``run-server --unsafe``); a
    Chromium reached over CDP was started by someone else, with the arguments it has.
    """

    kind: RemoteKind
    url: str
    env: str

    @property
    def can_pin(self) -> bool:
        return self.kind == "playwright-server"

    def describe(self) -> str:
        return f"remote {self.kind} {self.env}={self.url}"


def remote_browser(env: Mapping[str, str] | None = None) -> RemoteBrowser | None:
    """The remote browser the environment names, if any; naming both kinds is a configuration error."""
    env = os.environ if env is None else env
    ws, cdp = env.get(BROWSER_WS_ENV, "").strip(), env.get(CDP_URL_ENV, "").strip()
    if ws and cdp:
        raise BrowserUnavailable(f"both {BROWSER_WS_ENV} and {CDP_URL_ENV} are set. Fix: set only one of them "
                                 "(the Playwright server's ws endpoint, or the DevTools URL of a running Chromium)")
    if ws:
        if not ws.startswith(("ws://", "wss://")):
            raise BrowserUnavailable(f"{BROWSER_WS_ENV}={ws} is not a ws:// or wss:// URL. Fix: give the endpoint "
                                     "printed by 'playwright run-server' (e.g. ws://grid:3000/)")
        return RemoteBrowser("playwright-server", ws, BROWSER_WS_ENV)
    if cdp:
        if not cdp.startswith(("http://", "https://", "ws://", "wss://")):
            raise BrowserUnavailable(f"{CDP_URL_ENV}={cdp} is not an http(s):// or ws(s):// URL. Fix: give the "
                                     "DevTools endpoint, e.g. http://127.0.0.1:9222")
        return RemoteBrowser("cdp", cdp, CDP_URL_ENV)
    return None


# Playwright's sync API allows one driver per thread at a time: sessions in the same thread share it (ref-counted).
_drivers: dict[int, list[Any]] = {}
_drivers_lock = threading.Lock()


def acquire_playwright() -> Any:
    from playwright.sync_api import sync_playwright

    key = threading.get_ident()
    with _drivers_lock:
        entry = _drivers.get(key)
        if entry is None:
            manager = sync_playwright()
            entry = _drivers[key] = [manager, manager.start(), 0]
        entry[2] += 1
        return entry[1]


def release_playwright() -> None:
    key = threading.get_ident()
    with _drivers_lock:
        entry = _drivers.get(key)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] <= 0:
            del _drivers[key]
            entry[0].__exit__(None, None, None)


def _managed_executable() -> str | None:
    """Where Playwright's own Chromium lives, if it was installed (``playwright install chromium``)."""
    try:
        playwright = acquire_playwright()
    except Exception:  # noqa: BLE001 -- no or broken driver install
        return None  # "no managed browser", reported by the caller
    try:
        path = playwright.chromium.executable_path
    except Exception:  # noqa: BLE001
        path = None
    finally:
        release_playwright()
    return path if path and os.path.isfile(path) else None


def unavailable_message(extra: str = "") -> str:
    return ("no Chromium for the headless SMART launch" + (f" ({extra})" if extra else "") + ". Fix: "
            "run 'python -m playwright install chromium' where downloads are possible; otherwise install your "
            "distribution's Chromium ('apt-get install -y chromium') or set "
            f"{CHROMIUM_ENV}=/path/to/chromium")


def find_chromium(*, env: Mapping[str, str] | None = None) -> ChromiumChoice:
    """``$SMART_CONFORMANCE_CHROMIUM`` wins; then Playwright's managed build; then the system's."""
    env = os.environ if env is None else env
    from_env = env.get(CHROMIUM_ENV)
    if from_env:
        if not os.access(from_env, os.X_OK):
            raise BrowserUnavailable(unavailable_message(f"{CHROMIUM_ENV}={from_env} is not an executable"))
        return ChromiumChoice(from_env, "env")
    managed = _managed_executable()
    if managed:
        return ChromiumChoice(managed, "managed")
    for candidate in SYSTEM_CHROMIUM_PATHS:
        if os.access(candidate, os.X_OK):
            return ChromiumChoice(candidate, "system")
    raise BrowserUnavailable(unavailable_message(
        "neither Playwright's managed Chromium nor one of " + ", ".join(SYSTEM_CHROMIUM_PATHS) + " is installed"))


def pin_arg(pins: Iterable[str]) -> list[str]:
    """Chromium's switch that accepts exactly these leaf keys (SPKI sha256, base64) despite an unknown CA."""
    pins = sorted(pins)
    return ["--ignore-certificate-errors-spki-list=" + ",".join(pins)] if pins else []


def start_browser(playwright: Any, where: ChromiumChoice | RemoteBrowser, pins: frozenset[str],
                  headless: bool = True) -> Any:
    """A running Playwright ``Browser``: launched here, or connected to the remote one (pins sent along)."""
    if isinstance(where, RemoteBrowser):
        return _connect(playwright, where, pins, headless)
    executable = None if where.kind == "managed" else where.path
    try:
        return playwright.chromium.launch(executable_path=executable, headless=headless,
                                          args=[*where.launch_args, *pin_arg(pins)])
    except Exception as exc:
        raise BrowserUnavailable(unavailable_message(
            f"{where.kind} Chromium {where.path or ''} did not start: {str(exc).splitlines()[0]}")) from exc


def _connect(playwright: Any, remote: RemoteBrowser, pins: frozenset[str], headless: bool) -> Any:
    try:
        if remote.kind == "cdp":
            return playwright.chromium.connect_over_cdp(remote.url, timeout=REMOTE_CONNECT_TIMEOUT_MS)
        # A Playwright server reads the launch options of the browser it starts for this connection from this
        # header; it applies ``args`` only when started with --unsafe (else the remote must trust the CA itself).
        options = {"headless": headless, "args": pin_arg(pins)}
        return playwright.chromium.connect(remote.url, timeout=REMOTE_CONNECT_TIMEOUT_MS,
                                           headers={"x-playwright-launch-options": json.dumps(options)})
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BrowserUnavailable(
            f"the remote browser ({remote.env}={remote.url}) could not be reached: {first}. Fix: check that it "
            f"runs and that this machine can reach it, or unset {remote.env} to launch a local Chromium") from exc

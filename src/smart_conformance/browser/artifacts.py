"""Evidence of a browser launch kept for the report: screenshots with password inputs painted over, and Playwright
traces with every known secret masked in every member. Both land where the caller says (the run's
``reports/artifacts/...`` folder, see ``plugin.artifacts_dir``), so the paths a finding cites outlive the run."""

from __future__ import annotations

import html
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from smart_conformance.browser.recipe import MASK


@dataclass(frozen=True)
class Screenshot:
    path: Path
    url: str  # redacted
    title: str


def identity(value: str) -> str:
    return value


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit] or "page"


def take_screenshot(page: Any, directory: Path, name: str, redact_url: Callable[[str], str] = identity,
                    *, mask_passwords: bool = True) -> Screenshot:
    """A PNG of the viewport, password inputs painted over. The URL recorded is redacted (it may carry a code)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    mask = [page.locator("input[type=password]")] if mask_passwords else []
    page.screenshot(path=str(path), mask=mask, animations="disabled", caret="hide", timeout=10_000)
    try:
        title = page.title()
    except Exception:  # noqa: BLE001
        title = ""
    return Screenshot(path=path, url=redact_url(page.url), title=title)


def _secret_forms(secret: str) -> set[bytes]:
    forms = {secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1],
             html.escape(secret, quote=True)}
    return {f.encode("utf-8") for f in forms if len(f) >= 4}


def scrub_trace(path: Path, secrets: Iterable[str]) -> None:
    """Rewrite a trace zip with every known secret (password, code...) masked in every member, in any encoding.

    A Playwright trace records fill() arguments, DOM snapshots with input values and request bodies, so a kept
    trace would otherwise hold the member's password.
    """
    patterns = sorted({form for s in secrets if s for form in _secret_forms(s)}, key=len, reverse=True)
    if not patterns:
        return
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            for pattern in patterns:
                data = data.replace(pattern, MASK.encode())
            dst.writestr(info, data)
    path.write_bytes(buffer.getvalue())

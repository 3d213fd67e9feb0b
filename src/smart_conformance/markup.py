"""Where echoed request input lands in an HTML page: harmless (escaped text or attribute value) or live (markup).

A page that repeats a request parameter is safe only if the parameter is escaped for where it lands. The checks send
a marker that, unescaped, would open an element of its own and break out of quotes and scripts (:func:`payload`),
then parse the answer as a browser would and report each place where the marker became markup (:func:`landed`).
"""

from __future__ import annotations

import secrets
from html.parser import HTMLParser

import httpx

HTML_MEDIA = ("text/html", "application/xhtml+xml")


def new_mark() -> str:
    """A fresh marker: letters and digits only, so it is also a valid tag name."""
    return f"scx{secrets.token_hex(4)}"


def payload(mark: str) -> str:
    """The marker with what would break out of an attribute, a quoted string and a script, then open an element."""
    return f"{mark}\"'></script><{mark} x=1>"


def is_html(response: httpx.Response) -> bool:
    """A page a browser would render: labelled HTML, or unlabelled and looking like markup."""
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media in HTML_MEDIA or (not media and response.text.lstrip().startswith("<"))


class _Landing(HTMLParser):
    def __init__(self, mark: str) -> None:
        super().__init__(convert_charrefs=True)
        self.mark, self.found, self.raw_text = mark, list[str](), ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == self.mark or any(name == self.mark for name, _ in attrs):
            self.found.append(f"<{tag}> became an element of the page")
        self.raw_text = tag if tag in ("script", "style") else ""

    def handle_endtag(self, tag: str) -> None:
        self.raw_text = ""

    def handle_data(self, data: str) -> None:
        if self.raw_text == "script" and f"{self.mark}\"'" in data:
            self.found.append("the marker's quotes reached a <script> unescaped")


def landed(response: httpx.Response, mark: str) -> list[str]:
    """Each place ``mark`` became markup in an HTML answer: an element of its own, or quotes intact in a script.
    Nothing for JSON, for a page that does not echo it, or for one that escapes it."""
    if mark not in response.text or not is_html(response):
        return []
    parser = _Landing(mark)
    parser.feed(response.text)
    parser.close()
    return parser.found

"""``python -m smart_conformance.browser --check``: find and start the browser the harness would use (a local
Chromium, or the remote one the environment names); used by scripts/bootstrap."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from smart_conformance.browser.chromium import BrowserUnavailable
from smart_conformance.browser.session import BrowserSession


def check() -> int:
    try:
        with BrowserSession() as session:
            page = session.browser.new_page()
            page.set_content("<title>ok</title>")
            page.close()
            where = session.describe()
    except BrowserUnavailable as exc:
        print(f"smart-conformance: {exc}", file=sys.stderr)
        return 2
    print(f"chromium: {where}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smart_conformance.browser")
    parser.add_argument("--check", action="store_true", help="find and start a Chromium; exit 2 with the fix if none")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

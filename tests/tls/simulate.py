"""pytest plugin (``-p tests.tls.simulate``): rewrite what sslyze reports for chosen ports, for what no local server can do.

No OpenSSL this harness can load will serve SSL 3.0, and a scanner error on one protocol version cannot be provoked on
demand. To still prove how the TLS suite judges those scanner results end to end, this plugin patches
``smart_conformance.tls.scanner.scan`` in the suite's own process: ``SMART_TLS_SIMULATE`` is JSON
``{"<port>": {"<version>": "accepted" | "not_tested"}}``. Everything else about those endpoints is the real scan.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import pytest

from smart_conformance import tls

ENV = "SMART_TLS_SIMULATE"
# A suite SSL 3.0 really had, forward secret and not otherwise weak: only the protocol version is wrong.
_SSL3_SUITE = tls.classify_cipher("TLS_DHE_RSA_WITH_AES_128_CBC_SHA")


def _rewrite(scan: tls.TlsScan, overrides: dict[str, str]) -> tls.TlsScan:
    protocols = []
    for result in scan.protocols:
        status = overrides.get(result.version)
        if status == "accepted":
            result = tls.ProtocolResult(result.version, "accepted", (_SSL3_SUITE,))
        elif status == "not_tested":
            result = tls.ProtocolResult(result.version, "not_tested",
                                        error="CONNECTIVITY_ERROR: simulated scanner error")
        protocols.append(result)
    return dataclasses.replace(scan, protocols=tuple(protocols))


def pytest_configure(config: pytest.Config) -> None:
    plan: dict[str, dict[str, str]] = json.loads(os.environ.get(ENV) or "{}")
    if not plan:
        return
    real_scan = tls.scanner.scan

    def scan(endpoints: Sequence[tls.Endpoint], settings: tls.TlsScanSettings) -> dict[tls.Endpoint, Any]:
        results = real_scan(endpoints, settings)
        return {e: _rewrite(s, plan[str(e.port)]) if str(e.port) in plan else s for e, s in results.items()}

    tls.scanner.scan = scan  # type: ignore[assignment]  # what scan_once calls

"""Transport security of a target's services: scan, summarise, judge.

Four rooms, one job each:

* :mod:`.model` -- what is scanned and what a scan found, as plain frozen data (and cipher-suite classification);
* :mod:`.scanner` -- one sslyze run over every distinct host:port (cached per process), plus the client handshake
  that says whether a chain is valid the way clients judge it;
* :mod:`.web` -- HTTP over and without TLS: parsing Strict-Transport-Security, probing plain ``http://``;
* :mod:`.policy` -- every threshold and judgement the TLS checks apply (key sizes, hashes, suites, expiry, HSTS).

Nothing here imports pytest: the TLS suite's fixtures call :func:`scan_once` and its checks call :mod:`.policy`.
"""

from smart_conformance.tls import policy
from smart_conformance.tls.model import (
    PROTOCOL_VERSIONS,
    CertificateSummary,
    CipherInfo,
    Endpoint,
    HstsPolicy,
    ProtocolResult,
    ProtocolStatus,
    ProtocolVersion,
    TlsScan,
    TlsScanError,
    TlsScanSettings,
    classify_cipher,
    endpoints_from_urls,
    is_ip,
)
from smart_conformance.tls.scanner import (
    clear_cache,
    client_verifies,
    hostname_matches,
    scan,
    scan_once,
)
from smart_conformance.tls.web import (
    PlainHttpResult,
    PlainHttpStatus,
    hsts_from_headers,
    probe_plain_http,
)

__all__ = [
    "PROTOCOL_VERSIONS",
    "CertificateSummary",
    "CipherInfo",
    "Endpoint",
    "HstsPolicy",
    "PlainHttpResult",
    "PlainHttpStatus",
    "ProtocolResult",
    "ProtocolStatus",
    "ProtocolVersion",
    "TlsScan",
    "TlsScanError",
    "TlsScanSettings",
    "classify_cipher",
    "clear_cache",
    "client_verifies",
    "endpoints_from_urls",
    "hostname_matches",
    "hsts_from_headers",
    "is_ip",
    "policy",
    "probe_plain_http",
    "scan",
    "scan_once",
]

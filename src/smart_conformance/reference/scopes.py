"""SMART scope grammar: which requested scopes the server grants, and what a granted set permits.

Policy (documented for target authors):
- Granted: ``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``, ``online_access`` and patient-level
  resource scopes for the supported types (or ``*``) in v1 (``.read``, ``.write``, ``.*``) or v2 (``.cruds`` in-order
  subsets) syntax.
- Silently dropped (never an error, never extra rights): unknown scopes, ``user/``/``system/`` scopes, granular
  ``?param=value`` scopes, malformed v2 suffixes such as ``.sr`` or ``.dus``, unsupported resource types.
- The reference is read-only, so write rights are never granted: ``.write`` is dropped, ``.*`` becomes ``.read``
  and a v2 suffix keeps only its ``r``/``s`` letters (``.cruds`` → ``.rs``; ``.cud`` is dropped).
- A request with nothing grantable left is refused with ``invalid_scope``.
"""

from __future__ import annotations

import re

from smart_conformance.reference.data import SUPPORTED_TYPES

PLAIN_SCOPES = ("openid", "fhirUser", "launch/patient", "offline_access", "online_access")
_RESOURCE = re.compile(r"^patient/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>[a-z*]+)$")
_V2 = re.compile(r"^c?r?u?d?s?$")
# system/ scopes are granted only by the client_credentials grant (reference/backend.py), never at /authorize.
_SYSTEM_RESOURCE = re.compile(r"^system/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>[a-z*]+)$")
V1_LETTERS = {"read": "rs", "write": "cud", "*": "cruds"}


def grantable(requested: str) -> list[str]:
    """The requested scopes this server would grant, in request order, each in the syntax it was asked in."""
    out: list[str] = []
    for scope in requested.split():
        granted = _grant_one(scope)
        if granted and granted not in out:
            out.append(granted)
    return out


def _grant_one(scope: str) -> str | None:
    if scope in PLAIN_SCOPES:
        return scope
    match = _RESOURCE.match(scope)
    if match is None:
        return None
    rtype, perm = match["type"], match["perm"]
    if rtype != "*" and rtype not in SUPPORTED_TYPES:
        return None
    if perm in ("read", "*"):
        return f"patient/{rtype}.read"
    if perm == "write" or not _V2.match(perm):
        return None
    kept = "".join(letter for letter in perm if letter in "rs")
    return f"patient/{rtype}.{kept}" if kept else None


def permissions(scope: str) -> dict[str, set[str]]:
    """Resource type (or ``*``) → granted interaction letters (c, r, u, d, s)."""
    perms: dict[str, set[str]] = {}
    for item in scope.split():
        match = _RESOURCE.match(item) or _SYSTEM_RESOURCE.match(item)
        if match is None:
            continue
        perm = match["perm"]
        letters = V1_LETTERS.get(perm, perm if _V2.match(perm) else "")
        perms.setdefault(match["type"], set()).update(letters)
    return perms


def permits(scope: str, rtype: str, letter: str) -> bool:
    perms = permissions(scope)
    return letter in perms.get(rtype, set()) or letter in perms.get("*", set())


def has_system_scopes(scopes: list[str]) -> bool:
    return any(_SYSTEM_RESOURCE.match(s) for s in scopes)


def has_patient_scopes(scopes: list[str]) -> bool:
    return any(s.startswith("patient/") for s in scopes)


def is_subset(asked: list[str], granted: list[str]) -> bool:
    """Whether ``asked`` stays within ``granted`` (by permission, so patient/Patient.rs fits in patient/*.read)."""
    allowed = permissions(" ".join(granted))
    for scope in asked:
        if scope.startswith("patient/"):
            for rtype, letters in permissions(scope).items():
                have = allowed.get(rtype, set()) | allowed.get("*", set())
                if rtype == "*":
                    have = allowed.get("*", set())
                if not letters <= have:
                    return False
        elif scope not in granted:
            return False
    return True

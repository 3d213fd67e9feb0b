"""Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3).

The member-facing clients are registered for ``client_secret_basic`` (or ``client_secret_post`` under the
client-secret-post-only variant). Under the member-client-private-key-jwt variant the primary member-facing client is
registered with a public key instead (SMART client-confidential-asymmetric): it authenticates only with a signed
assertion (``client_assertion_type`` + ``client_assertion``, RFC 7523 §2.2), verified by the same code as the backend
client's (reference/backend.py), and any secret it presents is refused. Backend Services' own client_credentials
grant is reference/backend.py.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request

from smart_conformance.reference.context import Context
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.store import check_secret
from smart_conformance.reference.variants import (
    CLIENT_SECRET_POST_ONLY,
    MEMBER_CLIENT_PRIVATE_KEY_JWT,
)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """HTTP Basic per RFC 6749 §2.3.1: id and secret are form-urlencoded before base64."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def post_credentials(form: Any) -> tuple[str, str] | None:
    """client_secret_post (RFC 6749 §2.3.1): client_id and client_secret as form parameters."""
    if form is None or not form.get("client_id") or "client_secret" not in form:
        return None
    return str(form.get("client_id")), str(form.get("client_secret"))


def key_registered_client(ctx: Context) -> str | None:
    """The member-facing client registered with a key (private_key_jwt), if any: the first client, under the
    member-client-private-key-jwt variant."""
    return next(iter(ctx.data.clients), None) if ctx.variants.active(MEMBER_CLIENT_PRIVATE_KEY_JWT) else None


def authenticate_client(ctx: Context, request: Request, form: Any = None) -> str | None:
    """The authenticated client_id, or None. By default clients are registered for client_secret_basic; under the
    client-secret-post-only variant they are registered for client_secret_post, and only that method is accepted
    for them (OpenID Connect Registration's token_endpoint_auth_method); a client registered with a key is
    authenticated by its assertion only."""
    keyed = key_registered_client(ctx)
    if keyed is not None and form is not None and ("client_assertion" in form or "client_assertion_type" in form):
        from smart_conformance.reference import backend

        client_id, _why = backend.authenticate_member_assertion(ctx, request, form, keyed)
        return client_id
    if ctx.variants.active(CLIENT_SECRET_POST_ONLY):
        creds = None if request.headers.get("authorization") else post_credentials(form)
    else:
        creds = basic_credentials(request)
    if creds is None:
        return None
    client_id, secret = creds
    if client_id == keyed:
        return None  # registered with a key: a secret never authenticates it (RFC 6749 §2.3)
    client = ctx.store.client(client_id)
    if client is None:
        return None
    if ctx.faults.active(Fault.WRONG_SECRET_ACCEPTED) or check_secret(secret, client["secret_hash"]):
        return client_id
    return None

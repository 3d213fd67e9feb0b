"""SMART Backend Services on the reference server: a registered backend client and the client_credentials grant.

Registration (what a payer's client onboarding records): a backend client, ``backend-bulk-client``, pre-authorized
for ``system/`` read access to Patient, Coverage, ExplanationOfBenefit and Organization (not Practitioner or
RelatedPerson), with a JWK Set of two public keys: an RSA-2048 key for RS384 and a P-384 key for ES384. The private
keys are the *client's*; a second provider's client (``backend-other-client``) and the requesting payer of
Payer-to-Payer (``backend-p2p-client``, whose FHIR reads are limited to the members it matched with consent) have
one RSA key each. The server generates them at start into its state directory (mode 0600, never committed) only
so that the harness can act as that client. ``target_env()`` hands their paths to ``fixtures/targets/reference.yaml``.

Token endpoint policy (SMART App Launch 2.2 §Backend Services and §client-confidential-asymmetric, RFC 7523 §3):
- ``client_assertion_type`` must be ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer``;
- the assertion's ``iss`` and ``sub`` are the same registered client_id (and equal ``client_id`` if that is sent);
- the key is the client's registered key with the header's ``kid`` and a ``kty`` that fits ``alg`` (RS384 → RSA,
  ES384 → EC); no other key and no other algorithm is tried; a ``jku`` header must name the client's registered JWK
  Set URL (a client registered with a JWK Set has none, so any jku fails verification);
- the signature verifies, ``aud`` is the token endpoint URL, ``exp`` is present, not past and at most five minutes
  ahead (30 s leeway for clock skew), and the ``jti`` was not seen before for that client while it could be valid;
- a client secret (HTTP Basic or ``client_secret``) is refused: this client has only keys;
- every failure above is 401 ``invalid_client`` (RFC 6749 §5.2).
Scopes: the requested ``system/`` scopes within the registration are granted (``.read``/``.*`` become ``.read``,
v2 suffixes keep only ``r`` and ``s``); others are dropped (narrowed, never widened); nothing left → ``invalid_scope``.
The access token is the server's usual signed token (``sub`` = client_id, no patient), valid 300 s, and no refresh
token is issued (SMART: refresh tokens SHOULD NOT be issued to backend services).

The same verifier (:func:`verify_assertion`) authenticates the member-facing client when it is registered with a key
(the member-client-private-key-jwt variant; reference/client_auth.py), with its own key and its own faults.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.variants import (
    BACKEND_JWKS_URL,
    BACKEND_TOKENS_ONE_HOUR,
)

BACKEND_CLIENT_ID = "backend-bulk-client"
OTHER_CLIENT_ID = "backend-other-client"
P2P_CLIENT_ID = "backend-p2p-client"
OTHER = "OTHER"  # key_files / kids entry of the other client's RS384 key
P2P = "P2P"  # key_files / kids entry of the Payer-to-Payer client's RS384 key
MEMBER = "MEMBER"  # key_files / kids entry of the member-facing client's RS384 key (member-client-private-key-jwt)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REGISTERED_TYPES = ("Patient", "Coverage", "ExplanationOfBenefit", "Organization")
SIGNING_ALGS = ("RS384", "ES384")
BACKEND_TOKEN_TTL = 300  # SMART Backend Services: expires_in SHOULD NOT exceed 300
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 30
_SYSTEM = re.compile(r"^system/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perm>[a-z*]+)$")
_V2 = re.compile(r"^c?r?u?d?s?$")


def _jwk(kid: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The bare public JWK (RSA: n, e; EC: crv, x, y) with kty and kid, as the client registers it."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()) if isinstance(key, rsa.RSAPrivateKey)
                        else jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "RS384" if isinstance(key, rsa.RSAPrivateKey) else "ES384"}


@dataclass
class BackendClient:
    client_id: str
    jwks: dict[str, Any]  # the keys verification uses (registered, or last fetched from the JWKS URL)
    scopes: tuple[str, ...]

    def __post_init__(self) -> None:
        self.registered_jwks = {"keys": list(self.jwks["keys"])}  # what the client hosts at its JWKS URL


@dataclass
class Backend:
    """The backend client registry plus the replay cache of assertion ``jti`` values."""

    clients: dict[str, BackendClient]
    key_files: dict[str, Path]  # alg -> PEM file of the client's private key (for the harness, via target_env)
    kids: dict[str, str]  # alg -> kid
    member_jwks: dict[str, Any]  # the member-facing client's registered key, under member-client-private-key-jwt
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seen_before(self, client_id: str, jti: str, exp: float) -> bool:
        """Record the jti; True if it was already used by this client (kept until the assertion could expire)."""
        now = time.time()
        with self._lock:
            for key in [k for k, until in self._seen.items() if until < now]:
                del self._seen[key]
            if (client_id, jti) in self._seen:
                return True
            self._seen[(client_id, jti)] = max(exp, now) + LEEWAY
            return False


_LOAD_LOCK = threading.Lock()
_LOADED: dict[Path, Backend] = {}


def load_backend(state_dir: Path) -> Backend:
    """The registry of the server whose state is in ``state_dir`` (one per directory, shared by the listeners)."""
    with _LOAD_LOCK:
        key = state_dir.resolve()
        if key not in _LOADED or not _LOADED[key].key_files["RS384"].exists():
            _LOADED[key] = _load(state_dir)
        return _LOADED[key]


def _load(state_dir: Path) -> Backend:
    """Generate (first start) or reload the backend client's two key pairs in the state directory."""
    files = {"RS384": state_dir / "backend-client-rs384.pem", "ES384": state_dir / "backend-client-es384.pem",
             OTHER: state_dir / "backend-other-client-rs384.pem", MEMBER: state_dir / "member-client-rs384.pem",
             P2P: state_dir / "backend-p2p-client-rs384.pem"}
    keys: dict[str, Any] = {}
    for alg, path in files.items():
        if path.exists():
            keys[alg] = serialization.load_pem_private_key(path.read_bytes(), password=None)
        else:
            keys[alg] = (ec.generate_private_key(ec.SECP384R1()) if alg == "ES384"
                         else rsa.generate_private_key(public_exponent=65537, key_size=2048))
            path.write_bytes(keys[alg].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
            path.chmod(0o600)
    kids = {alg: f"backend-{alg.lower()}-{_thumb(keys[alg])}" for alg in files}
    jwks = {"keys": [_jwk(kids[alg], keys[alg]) for alg in ("RS384", "ES384")]}
    scopes = tuple(f"system/{t}.rs" for t in REGISTERED_TYPES)
    client = BackendClient(BACKEND_CLIENT_ID, jwks, scopes)
    # A second provider's backend client (same rights, its own key): the bulk suite's foreign client.
    other = BackendClient(OTHER_CLIENT_ID, {"keys": [_jwk(kids[OTHER], keys[OTHER])]}, scopes)
    # The requesting payer of Payer-to-Payer (its own key): its system/ token reaches, at the FHIR API, only the
    # members it matched with a Consent the payer honours (reference/pdex.py), not every member as the others do.
    p2p = BackendClient(P2P_CLIENT_ID, {"keys": [_jwk(kids[P2P], keys[P2P])]}, scopes)
    return Backend(clients={c.client_id: c for c in (client, other, p2p)}, key_files=files, kids=kids,
                   member_jwks={"keys": [_jwk(kids[MEMBER], keys[MEMBER])]})


def _thumb(key: Any) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(raw).hexdigest()[:16]


# --- scopes --------------------------------------------------------------------------------------------------
def _letters(perm: str) -> set[str]:
    if perm in ("read", "*"):
        return {"r", "s"}
    if perm == "write" or not _V2.match(perm):
        return set()
    return {letter for letter in perm if letter in "rs"}


def grant_system_scopes(requested: str, registered: tuple[str, ...], *, limit: bool = True) -> list[str]:
    """The requested system scopes the registration covers, narrowed to read; ``limit=False`` is the fault."""
    allowed: dict[str, set[str]] = {}
    for scope in registered:
        match = _SYSTEM.match(scope)
        if match:
            allowed.setdefault(match["type"], set()).update(_letters(match["perm"]))
    out: list[str] = []
    for scope in requested.split():
        match = _SYSTEM.match(scope)
        if match is None:
            continue
        rtype, perm = match["type"], match["perm"]
        have = allowed.get(rtype, set()) | allowed.get("*", set()) if limit else {"r", "s"}
        if rtype == "*" and limit:
            have = allowed.get("*", set())
        letters = _letters(perm) & have
        if not letters:
            continue
        granted = f"system/{rtype}.read" if perm in ("read", "*") and letters == {"r", "s"} else \
            f"system/{rtype}.{''.join(x for x in 'rs' if x in letters)}"
        if granted not in out:
            out.append(granted)
    return out


# --- the client_credentials grant ------------------------------------------------------------------------------
def _backend(ctx: Context) -> Backend:
    """The registry lives beside the server's SQLite state (its state directory)."""
    return load_backend(Path(ctx.store.path).parent)


def _public_key(jwk: dict[str, Any]) -> Any:
    return jwt.PyJWK(jwk).key


@dataclass(frozen=True)
class Lapses:
    """What a faulty verifier skips (all False: the conformant policy above). The backend client's lapses come from
    the assertion-* faults, the member client's from the member-assertion-* faults: one verifier for both."""

    type: bool = False
    iss_sub: bool = False
    key_by_kid: bool = False
    aud: bool = False
    exp: bool = False
    lifetime: bool = False
    jti: bool = False
    signature: bool = False
    unknown_kid: bool = False
    alg_none: bool = False
    hs256: bool = False
    jku: bool = False


def backend_lapses(ctx: Context) -> Lapses:
    on = ctx.faults.active
    return Lapses(type=on(Fault.ASSERTION_TYPE_NOT_CHECKED), iss_sub=on(Fault.ASSERTION_ISS_SUB_NOT_CHECKED),
                  key_by_kid=on(Fault.ASSERTION_KEY_BY_KID_ONLY), aud=on(Fault.ASSERTION_AUD_NOT_CHECKED),
                  exp=on(Fault.ASSERTION_EXP_NOT_CHECKED), lifetime=on(Fault.ASSERTION_LIFETIME_NOT_LIMITED),
                  jti=on(Fault.ASSERTION_JTI_REPLAY_ACCEPTED), signature=on(Fault.ASSERTION_SIGNATURE_NOT_VERIFIED),
                  unknown_kid=on(Fault.ASSERTION_UNKNOWN_KID_ACCEPTED), alg_none=on(Fault.ASSERTION_ALG_NONE_ACCEPTED),
                  hs256=on(Fault.ASSERTION_HS256_CONFUSION), jku=on(Fault.ASSERTION_JKU_TRUSTED))


def verify_assertion(ctx: Context, backend: Backend, request: Request, form: FormData,
                     clients: dict[str, BackendClient], lapses: Lapses) -> tuple[str | None, str]:
    """(client_id, "") when the assertion authenticates one of ``clients``, else (None, why). ``aud`` may be the
    token endpoint or the URL the assertion was posted to (SMART: "the same URL to which this authentication JWT will
    be posted"; RFC 7523 §3: a value that identifies the authorization server)."""
    if form.get("client_assertion_type") != ASSERTION_TYPE and not lapses.type:
        return None, "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = str(form.get("client_assertion", ""))
    if not assertion:
        return None, "client_assertion is required"
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None, "client_assertion is not a JWT"
    iss, sub = unverified.get("iss"), unverified.get("sub")
    if iss != sub and not lapses.iss_sub:
        return None, "iss and sub must both be the client_id"
    client_id = str(sub if lapses.iss_sub else iss)
    if form.get("client_id") not in (None, client_id):
        return None, "client_id differs from the assertion's iss"
    alg, kid = header.get("alg"), header.get("kid")
    client = clients.get(client_id)
    candidates = list(client.jwks["keys"]) if client else []
    if not candidates and lapses.key_by_kid:
        # The defect: the key is looked up by kid across all registered clients, whoever the assertion names.
        for other in clients.values():
            if any(k.get("kid") == kid for k in other.jwks["keys"]):
                client_id, candidates = other.client_id, list(other.jwks["keys"])
    if not candidates:
        return None, "unknown client"
    registered_url = jwks_url(ctx, client_id) if client_id in backend.clients and \
        ctx.variants.active(BACKEND_JWKS_URL) else None
    if "jku" in header and not lapses.jku and header.get("jku") != registered_url:
        return None, "jku is not the JWK Set URL registered for this client"
    # Explicit, because PyJWT skips exp/aud checks by default when the signature is not verified (fault paths).
    options: dict[str, Any] = {"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": True, "verify_aud": True}
    audience: list[str] | None = list(dict.fromkeys([ctx.auth_url("/auth/token"), ctx.auth_url(request.url.path)]))
    if lapses.aud:
        options = {"require": ["iss", "sub", "exp", "jti"], "verify_exp": True, "verify_aud": False}
        audience = None
    if lapses.exp:
        options["verify_exp"] = False
    try:
        if alg == "none" and lapses.alg_none:
            claims = jwt.decode(assertion, options={**options, "verify_signature": False}, audience=audience,
                                leeway=LEEWAY)
        elif alg == "HS256" and lapses.hs256:
            jwk = next((k for k in candidates if k.get("kid") == kid), candidates[0])
            pem = _public_key(jwk).public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            if not _hs256_ok(assertion, pem):
                return None, "signature does not verify"
            claims = jwt.decode(assertion, options={**options, "verify_signature": False}, audience=audience,
                                leeway=LEEWAY)
        else:
            if alg not in SIGNING_ALGS:
                return None, f"alg must be one of {', '.join(SIGNING_ALGS)}"
            kty = "RSA" if alg == "RS384" else "EC"
            matching = [k for k in candidates if k.get("kid") == kid and k.get("kty") == kty]
            if not matching and lapses.unknown_kid:
                matching = [k for k in candidates if k.get("kty") == kty][:1]  # the defect: kid ignored
            if len(matching) != 1:
                return None, "no registered key has this kid (and a kty that fits alg)"
            if lapses.signature:
                claims = jwt.decode(assertion, options={**options, "verify_signature": False}, audience=audience,
                                    leeway=LEEWAY)
            else:
                claims = jwt.decode(assertion, _public_key(matching[0]), algorithms=[alg], audience=audience,
                                    options=options, leeway=LEEWAY)
    except jwt.ExpiredSignatureError:
        return None, "the assertion has expired"
    except jwt.InvalidAudienceError:
        return None, "aud must be the token endpoint URL"
    except jwt.MissingRequiredClaimError as exc:
        return None, f"the assertion lacks {exc.claim}"
    except jwt.PyJWTError:
        return None, "the assertion's signature or claims do not verify"
    exp = float(claims.get("exp", 0))
    if exp - time.time() > MAX_ASSERTION_LIFETIME + LEEWAY and not lapses.lifetime:
        return None, "exp may be at most five minutes in the future"
    jti = str(claims.get("jti", ""))
    if backend.seen_before(client_id, jti, exp) and not lapses.jti:
        return None, "this assertion's jti was already used"
    return client_id, ""


def authenticate_member_assertion(ctx: Context, request: Request, form: FormData,
                                  client_id: str) -> tuple[str | None, str]:
    """The member-facing client registered with a key (member-client-private-key-jwt): its assertion at the token,
    introspection and revocation endpoints, verified like the backend client's (its own faults: member-assertion-*)."""
    backend = _backend(ctx)
    on = ctx.faults.active
    lapses = Lapses(signature=on(Fault.MEMBER_ASSERTION_SIGNATURE_NOT_CHECKED),
                    jti=on(Fault.MEMBER_ASSERTION_REPLAY_ACCEPTED))
    return verify_assertion(ctx, backend, request, form, {client_id: BackendClient(client_id, backend.member_jwks, ())},
                            lapses)


def _hs256_ok(assertion: str, secret: bytes) -> bool:
    """Only under the assertion-hs256-confusion fault: an HMAC-SHA256 check keyed with the public key's PEM."""
    head, body, sig = assertion.split(".")
    expected = base64.urlsafe_b64encode(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return hmac.compare_digest(expected.rstrip(b"=").decode(), sig)


async def client_credentials(ctx: Context, request: Request, form: FormData) -> Response:
    """``grant_type=client_credentials`` at /auth/token (dispatched from ``token_endpoint.token``)."""
    from smart_conformance.reference import client_auth
    from smart_conformance.reference import token_endpoint as auth

    backend = _backend(ctx)
    if ctx.variants.active(BACKEND_JWKS_URL):
        problem = await _refresh_jwks(ctx, backend)
        if problem:
            return auth._invalid_client(ctx, problem, request)
    basic = client_auth.basic_credentials(request)
    secret_client = basic[0] if basic else (str(form.get("client_id")) if "client_secret" in form else None)
    if secret_client is not None:
        if secret_client in backend.clients and ctx.faults.active(Fault.KEY_CLIENT_SECRET_ACCEPTED):
            client_id: str | None = secret_client  # the defect: no secret registered was taken as "any secret"
        elif secret_client in backend.clients:
            return auth._invalid_client(ctx, "this client authenticates with private_key_jwt only", request)
        elif client_auth.authenticate_client(ctx, request, form) is not None:
            return auth._oauth_error(ctx, "unauthorized_client", "client_credentials is not allowed for this client")
        else:
            return auth._invalid_client(ctx, "client authentication failed", request)
    else:
        client_id, why = verify_assertion(ctx, backend, request, form, backend.clients, backend_lapses(ctx))
        if client_id is None:
            return auth._invalid_client(ctx, why, request)
    client = backend.clients[client_id]
    requested = str(form.get("scope", ""))
    if not requested:
        return auth._oauth_error(ctx, "invalid_scope", "scope is required")
    granted = grant_system_scopes(requested, client.scopes, limit=not ctx.faults.active(Fault.BACKEND_SCOPE_NOT_LIMITED))
    if not granted:
        return auth._oauth_error(ctx, "invalid_scope", "no requested scope is within this client's registration")
    if ctx.faults.active(Fault.BACKEND_SCOPE_WIDENED) and "system/*.rs" not in granted:
        granted.append("system/*.rs")
    scope = " ".join(granted)
    ttl = min(3600 if ctx.variants.active(BACKEND_TOKENS_ONE_HOUR) else BACKEND_TOKEN_TTL, ctx.access_token_ttl)
    token = issue_system_token(ctx, client_id, scope, ttl)
    body: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": ttl, "scope": scope}
    if ctx.faults.active(Fault.BACKEND_TOKEN_NO_EXPIRES_IN):
        del body["expires_in"]
    if ctx.faults.active(Fault.BACKEND_TOKEN_LONG_LIVED):
        body["expires_in"] = 86400
    if ctx.faults.active(Fault.BACKEND_REFRESH_TOKEN_ISSUED):
        body["refresh_token"] = secrets.token_urlsafe(32)
    return auth._token_response(ctx, body)


# --- registration by JWKS URL (the backend-jwks-url variant) -----------------------------------------------------
def jwks_url(ctx: Context, client_id: str) -> str:
    """Where the client hosts its public JWK Set: here played by the reference itself, over TLS on loopback."""
    return ctx.url(f"/clients/{client_id}/jwks.json")


async def client_jwks(request: Request) -> Response:
    """The client's public JWK Set as the client would host it (no authentication, Cache-Control as SMART asks)."""
    ctx = ctx_of(request)
    client = _backend(ctx).clients.get(request.path_params["client_id"])
    if client is None or not ctx.variants.active(BACKEND_JWKS_URL):
        return JSONResponse({"error": "not found"}, status_code=404)
    return JSONResponse(client.registered_jwks, headers={"Cache-Control": "max-age=60"})


async def _refresh_jwks(ctx: Context, backend: Backend) -> str:
    """Dereference each client's registered JWKS URL (GET, Accept: application/json) before verifying: the keys
    in use are whatever the client hosts now. An unreachable or malformed JWK Set fails authentication."""
    context = ssl.create_default_context(cafile=str(Path(ctx.store.path).parent / "ca.pem"))
    async with httpx.AsyncClient(verify=context, timeout=5.0) as client:
        for registered in backend.clients.values():
            try:
                response = await client.get(jwks_url(ctx, registered.client_id),
                                            headers={"Accept": "application/json"})
                keys = response.json().get("keys") if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                keys = None
            if not isinstance(keys, list):
                return "the client's JWK Set URL could not be read"
            registered.jwks = {"keys": keys}
    return ""


def issue_system_token(ctx: Context, client_id: str, scope: str, ttl: int) -> str:
    """The server's signed access token for a backend client: no member, no patient, sub = client_id."""
    now = time.time()
    jti = secrets.token_urlsafe(24)
    if ctx.faults.active(Fault.BACKEND_TOKEN_LONG_LIVED):
        ttl = 86400
    claims = {"iss": ctx.issuer, "sub": client_id, "aud": ctx.fhir_base, "client_id": client_id, "scope": scope,
              "jti": jti, "iat": int(now), "exp": int(now) + ttl}
    ctx.store.add_access_token(jti=jti, grant_id="", client_id=client_id, scope=scope, patient=None,
                               username="", iat=now, exp=now + ttl)
    return ctx.keys.sign(claims)

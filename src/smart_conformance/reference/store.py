"""Security state in SQLite: clients, members, pending authorizations, codes, grants, tokens.

Several processes (pytest-xdist workers) and the server's own threads may touch one database, so it runs in WAL
mode, every connection has a busy timeout, and state changes that must be atomic (spending a code, revoking a grant)
run inside ``BEGIN IMMEDIATE``. Codes and refresh tokens are stored as SHA-256 digests, secrets and passwords as
salted PBKDF2 hashes: a copy of the database yields nothing usable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smart_conformance.reference.data import Dataset

_PBKDF2_ROUNDS = 20_000  # a test server: enough to be a real hash, cheap enough for a fast start-up

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,
    redirect_uris TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, sub TEXT NOT NULL,
    fhir_user TEXT NOT NULL, display TEXT NOT NULL, patients TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, params TEXT NOT NULL, csrf TEXT NOT NULL,
    browser TEXT NOT NULL, username TEXT, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS codes (code_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
    challenge TEXT, method TEXT, scope TEXT NOT NULL, patient TEXT, username TEXT NOT NULL, nonce TEXT,
    expires REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0, grant_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (grant_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, username TEXT NOT NULL,
    scope TEXT NOT NULL, patient TEXT, revoked INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS access_tokens (jti TEXT PRIMARY KEY, grant_id TEXT NOT NULL, client_id TEXT NOT NULL,
    scope TEXT NOT NULL, patient TEXT, username TEXT NOT NULL, iat REAL NOT NULL, exp REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS refresh_tokens (token_hash TEXT PRIMARY KEY, grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL, scope TEXT NOT NULL, iat REAL NOT NULL, exp REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS consents (username TEXT NOT NULL, client_id TEXT NOT NULL, scope TEXT NOT NULL,
    PRIMARY KEY (username, client_id));
CREATE INDEX IF NOT EXISTS access_by_grant ON access_tokens(grant_id);
CREATE INDEX IF NOT EXISTS refresh_by_grant ON refresh_tokens(grant_id);
"""


def digest(value: str) -> str:
    """Lookup key for a bearer secret (code, refresh token): the secret itself is never stored."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    derived = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, _PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${_PBKDF2_ROUNDS}${salt.hex()}${derived.hex()}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        _, rounds, salt, expected = stored.split("$")
        derived = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), bytes.fromhex(salt), int(rounds))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived.hex(), expected)


def new_secret() -> str:
    """256 bits from the OS CSPRNG, URL-safe (RFC 6749 §10.10 asks for at most 2^-128 guessing odds)."""
    return secrets.token_urlsafe(32)


class Store:
    """One SQLite file; a connection per thread (sqlite3 connections are not shared across threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.db().execute("PRAGMA journal_mode=WAL")
        self.db().executescript(SCHEMA)

    def db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front so read-then-write sequences cannot interleave."""
        db = self.db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db().execute(sql, args).fetchone()
        return row

    def seed(self, dataset: Dataset) -> None:
        """Load (or refresh) clients and members from the fixture data, hashing their secrets."""
        with self.transaction() as db:
            for c in dataset.clients.values():
                db.execute("INSERT OR REPLACE INTO clients VALUES (?,?,?,?)",
                           (c.client_id, hash_secret(c.client_secret), json.dumps(list(c.redirect_uris)), c.name))
            for m in dataset.members.values():
                db.execute("INSERT OR REPLACE INTO members VALUES (?,?,?,?,?,?)",
                           (m.username, hash_secret(m.password), m.sub, m.fhir_user, m.display,
                            json.dumps(list(m.patients))))

    # --- clients and members ---------------------------------------------------------------------------------
    def client(self, client_id: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM clients WHERE client_id=?", client_id)

    def member(self, username: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM members WHERE username=?", username)

    # --- pending authorizations ------------------------------------------------------------------------------
    def add_pending(self, params: dict[str, Any], browser: str, ttl: float = 600.0) -> tuple[str, str]:
        pending_id, csrf = new_secret(), new_secret()
        with self.transaction() as db:
            db.execute("DELETE FROM pending WHERE expires < ?", (time.time(),))
            db.execute("INSERT INTO pending VALUES (?,?,?,?,NULL,?)",
                       (pending_id, json.dumps(params), csrf, digest(browser), time.time() + ttl))
        return pending_id, csrf

    def pending(self, pending_id: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM pending WHERE id=? AND expires >= ?", pending_id, time.time())

    def set_pending_user(self, pending_id: str, username: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE pending SET username=? WHERE id=?", (username, pending_id))

    def take_pending(self, pending_id: str) -> bool:
        """Delete the pending request; False if someone else already finished it (double submit)."""
        with self.transaction() as db:
            return db.execute("DELETE FROM pending WHERE id=?", (pending_id,)).rowcount == 1

    # --- identity-provider sessions (single sign-on) ---------------------------------------------------------
    def add_session(self, username: str, ttl: float = 3600.0) -> str:
        """A member signed in with a password: the session a later authorization in the same browser reuses."""
        session = new_secret()
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            db.execute("INSERT INTO sessions VALUES (?,?,?)", (digest(session), username, time.time() + ttl))
        return session

    def session_user(self, session: str) -> str | None:
        row = self.one("SELECT username FROM sessions WHERE id_hash=? AND expires >= ?", digest(session), time.time())
        return str(row["username"]) if row is not None else None

    # --- remembered consent (the remembered-consent variant) ---------------------------------------------------
    def remember_consent(self, username: str, client_id: str, scopes: list[str]) -> None:
        """Add the scopes a member just approved for a client to what the server remembers of that pair."""
        with self.transaction() as db:
            row = db.execute("SELECT scope FROM consents WHERE username=? AND client_id=?",
                             (username, client_id)).fetchone()
            known = row["scope"].split() if row is not None else []
            merged = " ".join(dict.fromkeys([*known, *scopes]))
            db.execute("INSERT OR REPLACE INTO consents VALUES (?,?,?)", (username, client_id, merged))

    def remembered_consent(self, username: str, client_id: str) -> frozenset[str]:
        row = self.one("SELECT scope FROM consents WHERE username=? AND client_id=?", username, client_id)
        return frozenset(row["scope"].split()) if row is not None else frozenset()

    # --- codes and grants ------------------------------------------------------------------------------------
    def add_code(self, *, client_id: str, redirect_uri: str, challenge: str | None, method: str | None, scope: str,
                 patient: str | None, username: str, nonce: str | None, ttl: float, code: str | None = None) -> str:
        """Issue a code (``code``: the one a fault chose); its grant row exists from the start so a replayed code can
        revoke what it produced."""
        code, grant_id = code or new_secret(), new_secret()
        with self.transaction() as db:
            db.execute("INSERT INTO grants VALUES (?,?,?,?,?,0,?)",
                       (grant_id, client_id, username, scope, patient, time.time()))
            db.execute("INSERT INTO codes VALUES (?,?,?,?,?,?,?,?,?,?,0,?)",
                       (digest(code), client_id, redirect_uri, challenge, method, scope, patient, username, nonce,
                        time.time() + ttl, grant_id))
        return code

    def spend_code(self, code: str) -> tuple[sqlite3.Row | None, bool]:
        """Look a code up and mark it used in one transaction; returns the row and whether it was used before."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM codes WHERE code_hash=?", (digest(code),)).fetchone()
            if row is None:
                return None, False
            db.execute("UPDATE codes SET used=1 WHERE code_hash=?", (row["code_hash"],))
            return row, bool(row["used"])

    def add_grant(self, *, client_id: str, username: str, scope: str, patient: str | None) -> str:
        """A grant not born from a code (implicit or password grant, reachable only under faults)."""
        grant_id = new_secret()
        with self.transaction() as db:
            db.execute("INSERT INTO grants VALUES (?,?,?,?,?,0,?)",
                       (grant_id, client_id, username, scope, patient, time.time()))
        return grant_id

    def grant(self, grant_id: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM grants WHERE grant_id=?", grant_id)

    def revoke_grant(self, grant_id: str) -> None:
        """End a whole authorization: every access and refresh token it produced."""
        with self.transaction() as db:
            db.execute("UPDATE grants SET revoked=1 WHERE grant_id=?", (grant_id,))
            db.execute("UPDATE access_tokens SET revoked=1 WHERE grant_id=?", (grant_id,))
            db.execute("UPDATE refresh_tokens SET revoked=1 WHERE grant_id=?", (grant_id,))

    def revoke_member_grants(self, *, username: str, client_id: str) -> None:
        """End every authorization one member gave one client (a revocation policy RFC 7009 §2.1 allows)."""
        with self.transaction() as db:
            grants = [row["grant_id"] for row in db.execute(
                "SELECT grant_id FROM grants WHERE username=? AND client_id=?", (username, client_id))]
            for grant_id in grants:
                db.execute("UPDATE grants SET revoked=1 WHERE grant_id=?", (grant_id,))
                db.execute("UPDATE access_tokens SET revoked=1 WHERE grant_id=?", (grant_id,))
                db.execute("UPDATE refresh_tokens SET revoked=1 WHERE grant_id=?", (grant_id,))

    def revoke_access_tokens_of_grant(self, grant_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE access_tokens SET revoked=1 WHERE grant_id=?", (grant_id,))

    # --- access and refresh tokens ---------------------------------------------------------------------------
    def add_access_token(self, *, jti: str, grant_id: str, client_id: str, scope: str, patient: str | None,
                         username: str, iat: float, exp: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO access_tokens VALUES (?,?,?,?,?,?,?,?,0)",
                       (jti, grant_id, client_id, scope, patient, username, iat, exp))

    def access_token(self, jti: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM access_tokens WHERE jti=?", jti)

    def revoke_access_token(self, jti: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE access_tokens SET revoked=1 WHERE jti=?", (jti,))

    def add_refresh_token(self, *, grant_id: str, client_id: str, scope: str, ttl: float) -> str:
        token = new_secret()
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT INTO refresh_tokens VALUES (?,?,?,?,?,?,0)",
                       (digest(token), grant_id, client_id, scope, now, now + ttl))
        return token

    def refresh_token(self, token: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM refresh_tokens WHERE token_hash=?", digest(token))

    def revoke_refresh_token(self, token: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE refresh_tokens SET revoked=1 WHERE token_hash=?", (digest(token),))

"""API tokens: created with a role, shown once, kept only as a sha256 of the secret.

A secret reads ``tbt_<id>_<random>``: the id (public, shown in listings) finds the row, and the
whole secret's sha256 is compared in constant time with the stored one. 32 random bytes make a
salt pointless and a slow hash unnecessary: nobody guesses or brute-forces 256 bits.
"""

import hashlib
import hmac
import re
import secrets
import time

from sqlalchemy import select

from orchestrator.errors import ConfigurationError
from orchestrator.store.database import Database
from orchestrator.store.models import TokenRow
from orchestrator.store.records import Role, TokenRecord

PREFIX = "tbt"
_SECRET = re.compile(rf"^{PREFIX}_(?P<id>[0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$")
_UNKNOWN = hashlib.sha256(b"no such token").hexdigest()  # compared against when the id is unknown
LAST_USED_RESOLUTION_S = 60.0  # last_used_at is written at most this often per token


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> tuple[str, str]:
    """A fresh (token id, secret)."""
    token_id = secrets.token_hex(6)
    return token_id, f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"


class TokenStore:
    """Creates, verifies, lists and revokes tokens."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def create(self, name: str, role: Role) -> tuple[TokenRecord, str]:
        """A new token and its secret: the only time the secret exists outside the caller's hands."""
        if not _NAME.match(name):
            raise ConfigurationError(
                f"name: {name!r} must be 1-100 letters, digits, spaces or ._@- "
                "and start with a letter or digit"
            )
        token_id, secret = new_secret()
        row = TokenRow(
            id=token_id,
            name=name,
            role=str(Role(role)),
            secret_sha256=hash_secret(secret),
            created_at=time.time(),
            revoked_at=None,
            last_used_at=None,
        )
        with self._database.session(write=True) as session:
            session.add(row)
            session.flush()
            return _record(row), secret

    def verify(self, secret: str) -> TokenRecord | None:
        """The active token this secret belongs to, or None (unknown, malformed or revoked)."""
        match = _SECRET.match(secret)
        token_id = match["id"] if match else ""
        with self._database.session() as session:
            row = session.get(TokenRow, token_id) if token_id else None
            stored = row.secret_sha256 if row is not None else _UNKNOWN
            genuine = hmac.compare_digest(stored, hash_secret(secret)) and row is not None
            if not genuine or row is None or row.revoked_at is not None:
                return None
            record = _record(row)
        now = time.time()
        if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION_S:
            with self._database.session(write=True) as session:
                row = session.get(TokenRow, token_id)
                if row is not None:
                    row.last_used_at = now
        return record

    def list_tokens(self, *, include_revoked: bool = True) -> list[TokenRecord]:
        with self._database.session() as session:
            query = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id)
            if not include_revoked:
                query = query.where(TokenRow.revoked_at.is_(None))
            return [_record(row) for row in session.scalars(query).all()]

    def get(self, token_id: str) -> TokenRecord | None:
        with self._database.session() as session:
            row = session.get(TokenRow, token_id)
            return None if row is None else _record(row)

    def revoke(self, token_id: str) -> TokenRecord | None:
        """Revoke (idempotent: a revoked token keeps its first revocation time); None if unknown."""
        with self._database.session(write=True) as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = time.time()
            return _record(row)


def _record(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        token_id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )

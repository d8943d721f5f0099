"""API tokens: the secret is shown once and kept only as a hash; revoked tokens stop working."""

import hashlib
import time

import pytest
from sqlalchemy import select

from orchestrator.errors import ConfigurationError
from orchestrator.store import Role, TokenStore, open_database
from orchestrator.store.models import TokenRow
from orchestrator.store.tokens import LAST_USED_RESOLUTION_S

pytestmark = pytest.mark.unit


@pytest.fixture
def database(tmp_path):
    opened = open_database(f"sqlite:///{tmp_path / 'testbed.db'}")
    yield opened
    opened.close()


@pytest.fixture
def tokens(database):
    return TokenStore(database)


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.SUBMITTER, False),
        (Role.SUBMITTER, Role.VIEWER, True),
        (Role.SUBMITTER, Role.ADMIN, False),
        (Role.ADMIN, Role.SUBMITTER, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_roles_are_ordered(role, needed, allowed):
    assert role.allows(needed) is allowed


def test_only_a_hash_of_the_secret_is_stored(tokens, database):
    record, secret = tokens.create("ci-release", Role.SUBMITTER)

    with database.session() as session:
        row = session.scalars(select(TokenRow)).one()
    assert secret.startswith(f"tbt_{record.token_id}_")
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(vars(row))


def test_a_genuine_secret_verifies_to_its_token_and_notes_its_use(tokens):
    record, secret = tokens.create("qa", Role.VIEWER)

    verified = tokens.verify(secret)

    assert verified is not None
    assert (verified.token_id, verified.name, verified.role) == (record.token_id, "qa", Role.VIEWER)
    assert tokens.get(record.token_id).last_used_at == pytest.approx(time.time(), abs=60)


def test_use_is_noted_at_most_once_a_minute(tokens):
    _, secret = tokens.create("qa", Role.VIEWER)
    tokens.verify(secret)
    first = tokens.list_tokens()[0].last_used_at

    tokens.verify(secret)

    assert tokens.list_tokens()[0].last_used_at == first
    assert LAST_USED_RESOLUTION_S == 60.0


def test_forged_unknown_and_malformed_secrets_verify_to_nothing(tokens):
    record, secret = tokens.create("qa", Role.ADMIN)
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    assert tokens.verify(forged) is None
    assert tokens.verify(f"tbt_{'0' * 12}_{'A' * 43}") is None
    assert tokens.verify("") is None
    assert tokens.verify(secret + "x") is None
    assert tokens.get(record.token_id).last_used_at is None


def test_a_revoked_token_stops_working_and_keeps_its_first_revocation_time(tokens):
    record, secret = tokens.create("leaver", Role.SUBMITTER)

    revoked = tokens.revoke(record.token_id)
    again = tokens.revoke(record.token_id)

    assert revoked.active is False
    assert again.revoked_at == revoked.revoked_at
    assert tokens.verify(secret) is None
    assert tokens.revoke("0" * 12) is None
    assert tokens.list_tokens(include_revoked=False) == []
    assert [t.token_id for t in tokens.list_tokens()] == [record.token_id]


@pytest.mark.parametrize("name", ["", " leading space", "x" * 101, "new\nline", "nul\x00"])
def test_a_token_name_must_be_printable_and_short(tokens, name):
    with pytest.raises(ConfigurationError, match="name:"):
        tokens.create(name, Role.VIEWER)

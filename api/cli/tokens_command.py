"""``testbed tokens``: create, list and revoke API tokens, straight in the run store."""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.cli.common import JsonOption, err, errors_as_exit_codes, settings
from orchestrator.store import Role, TokenRecord, TokenStore, database_url, open_database

tokens_app = typer.Typer(help="API tokens: every route but /healthz needs one.", no_args_is_help=True)


@contextmanager
def _tokens() -> Iterator[TokenStore]:
    with errors_as_exit_codes():
        database = open_database(database_url(settings()))
        try:
            yield TokenStore(database)
        finally:
            database.close()


def _when(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _as_dict(record: TokenRecord) -> dict[str, object]:
    return {
        "id": record.token_id,
        "name": record.name,
        "role": str(record.role),
        "active": record.active,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
    }


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what holds it, e.g. ci-release.")],
    role: Annotated[Role, typer.Option("--role", help="viewer < submitter < admin.")],
    json_output: JsonOption = False,
) -> None:
    """Create a token; its secret is printed this once (only a hash of it is kept)."""
    with _tokens() as tokens:
        record, secret = tokens.create(name, role)
    if json_output:
        sys.stdout.write(json.dumps({**_as_dict(record), "secret": secret}) + "\n")
        return
    err.print(f"token {record.token_id} ({record.name}, {record.role}) created; its secret, shown only now:")
    sys.stdout.write(secret + "\n")


@tokens_app.command("list")
def list_tokens(json_output: JsonOption = False) -> None:
    """Every token, revoked ones too; never a secret."""
    with _tokens() as tokens:
        records = tokens.list_tokens()
    if json_output:
        sys.stdout.write(json.dumps([_as_dict(r) for r in records], indent=2) + "\n")
        return
    table = Table(title="API tokens")
    for column in ("id", "name", "role", "created", "last used", "revoked"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.token_id, r.name, str(r.role), _when(r.created_at), _when(r.last_used_at), _when(r.revoked_at)
        )
    Console().print(table)


@tokens_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `testbed tokens list`).")],
) -> None:
    """Revoke a token: it stops working at once."""
    with _tokens() as tokens:
        record = tokens.revoke(token_id)
    if record is None:
        err.print(f"bad input: no token {token_id}")
        raise typer.Exit(3)
    err.print(f"token {record.token_id} ({record.name}) is revoked")

"""``testbed keys``: signing keys for gate verdicts and candidate manifests."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOption, console, errors_as_exit_codes
from orchestrator.attest import DEFAULT_PASSWORD_ENV, create_key_pair, password_from_env

keys_app = typer.Typer(help="Signing keys (ECDSA P-256) for verdicts and candidates.", no_args_is_help=True)

PasswordEnvOption = Annotated[
    str,
    typer.Option(
        "--password-env",
        help="Environment variable holding the private key's password (never on the command line).",
    ),
]


@keys_app.command("create")
def keys_create(
    out: Annotated[Path, typer.Option("--out", help="Directory for testbed-signing.key and .pub.")],
    password_env: PasswordEnvOption = DEFAULT_PASSWORD_ENV,
    json_output: JsonOption = False,
) -> None:
    """Create a key pair: encrypted PKCS#8 private key (mode 0600) and PEM public key."""
    with errors_as_exit_codes():
        pair = create_key_pair(out, password_from_env(password_env))
    if json_output:
        data = {"private_key": str(pair.private_key), "public_key": str(pair.public_key), "keyid": pair.keyid}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out_console = console()
    out_console.print(f"private key: {pair.private_key} (encrypted; keep it secret)", highlight=False)
    out_console.print(f"public key:  {pair.public_key} (give it to whoever verifies)", highlight=False)
    out_console.print(f"key id:      {pair.keyid}", highlight=False)

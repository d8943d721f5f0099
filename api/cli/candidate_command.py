"""``testbed candidate``: sign a candidate's manifest with a release key, and check a signature.

``verify`` exits 0 when a trusted key signed the manifest and every artifact still has its signed
digest, 3 (bad input, as ``gate`` would) with a message naming the artifact otherwise.
"""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import console, errors_as_exit_codes
from api.cli.keys_command import PasswordEnvOption
from orchestrator.attest import (
    DEFAULT_PASSWORD_ENV,
    load_signer,
    load_trusted_key,
    password_from_env,
    sign_candidate,
    verify_signed_candidate,
)

candidate_app = typer.Typer(help="Candidate manifests: sign and verify.", no_args_is_help=True)

CandidateArgument = Annotated[Path, typer.Argument(help="Candidate directory (or its candidate.yaml).")]


@candidate_app.command("sign")
def candidate_sign(
    directory: CandidateArgument,
    key: Annotated[Path, typer.Option("--key", help="Release signing key (encrypted PKCS#8 PEM).")],
    password_env: PasswordEnvOption = DEFAULT_PASSWORD_ENV,
) -> None:
    """Sign candidate.yaml (detached DSSE, candidate.yaml.dsse); every file must match its pin first."""
    with errors_as_exit_codes():
        signer = load_signer(key, password_from_env(password_env))
        signature = sign_candidate(directory, signer)
    console().print(f"signed: {signature}", highlight=False)


@candidate_app.command("verify")
def candidate_verify(
    directory: CandidateArgument,
    key: Annotated[list[Path], typer.Option("--key", help="Trusted release public key; repeatable.")],
) -> None:
    """Check the manifest's signature and every artifact's digest, as a gate requiring it would."""
    with errors_as_exit_codes():
        candidate = verify_signed_candidate(directory, [load_trusted_key(path) for path in key])
    console().print(
        f"verified: {candidate.name} {candidate.version}, {len(candidate.manifest.artifacts)} artifact(s) "
        "as signed",
        highlight=False,
    )

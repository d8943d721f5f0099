"""``testbed verify``: the publish step's check that a signed gate verdict covers the exact bytes.

Exit codes: 0 verified; 1 refused (the reason names the check that failed); 2 could not check
(a file unreadable, a key unusable). Only 0 lets an artifact out.
"""

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from api.cli.common import JsonOption, console, err
from orchestrator.attest import (
    Verification,
    VerificationPolicy,
    load_trusted_key,
    read_revocation_list,
    verify_files,
)
from orchestrator.errors import ConfigurationError

EXIT_VERIFIED, EXIT_REFUSED, EXIT_CANNOT_CHECK = 0, 1, 2


def _policy(
    keys: list[Path],
    *,
    policy_digest: str | None,
    verifier_id: str | None,
    max_age: float | None,
    revoked: Path | None,
) -> VerificationPolicy:
    if max_age is not None and max_age <= 0:
        raise ConfigurationError(f"--max-age {max_age:g}: must be a positive number of days")
    return VerificationPolicy(
        trusted_keys=tuple(load_trusted_key(path) for path in keys),
        now=datetime.now(UTC),
        verifier_id=verifier_id,
        policy_sha256=policy_digest,
        max_age=timedelta(days=max_age) if max_age is not None else None,
        revoked=read_revocation_list(revoked) if revoked is not None else frozenset(),
    )


def _report(result: Verification, json_output: bool) -> None:
    if json_output:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
        return
    if result.verified:
        out = console()
        out.print(Text("verified: ", style="bold green") + Text(result.reason))
        for path, digest in result.artifacts.items():
            out.print(f"  {path}  sha256:{digest}", highlight=False)
        out.print(f"  statement sha256:{result.statement_sha256}", highlight=False)
    else:
        err.print(Text(f"refused ({result.failed_check}): ", style="bold red") + Text(result.reason))


def verify(
    artifacts: Annotated[list[Path], typer.Argument(help="The exact files about to be published.")],
    *,
    attestation: Annotated[Path, typer.Option("--attestation", help="The VSA (DSSE envelope JSON).")],
    key: Annotated[list[Path], typer.Option("--key", help="Trusted public key (PEM); repeat for several.")],
    policy_digest: Annotated[
        str | None, typer.Option("--policy-digest", help="Required matrix digest (sha256:HEX or HEX).")
    ] = None,
    verifier_id: Annotated[str | None, typer.Option("--verifier-id", help="Required verifier id.")] = None,
    max_age: Annotated[
        float | None, typer.Option("--max-age", help="Refuse verdicts older than this many days.")
    ] = None,
    revoked: Annotated[
        Path | None, typer.Option("--revoked", help="Revocation list: one sha256 per line.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Check that a signed, passing gate verdict covers these exact artifact bytes."""
    try:
        policy = _policy(
            key, policy_digest=policy_digest, verifier_id=verifier_id, max_age=max_age, revoked=revoked
        )
        result = verify_files(attestation, artifacts, policy)
    except (ConfigurationError, OSError) as exc:
        message = str(exc) if isinstance(exc, ConfigurationError) else f"{exc.filename}: {exc.strerror}"
        if json_output:
            sys.stdout.write(json.dumps({"verified": False, "could_not_check": message}, indent=2) + "\n")
        err.print(Text("could not check: ", style="bold yellow") + Text(message))
        raise typer.Exit(EXIT_CANNOT_CHECK) from exc
    _report(result, json_output)
    raise typer.Exit(EXIT_VERIFIED if result.verified else EXIT_REFUSED)

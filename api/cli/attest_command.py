"""``testbed attest``: sign a finished run directory, so runs from before signing was configured
(or from a machine without the key) can be attested afterwards.

Exit codes: 0 attestations written (whatever the verdict: a FAILED one verifies for nobody),
2 the run is inconclusive (nothing to attest), 3 bad input (run.json, key, password, matrix).
"""

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOption, console, errors_as_exit_codes
from api.cli.keys_command import PasswordEnvOption
from orchestrator.attest import (
    DEFAULT_PASSWORD_ENV,
    DEFAULT_VERIFIER_ID,
    AttestationPaths,
    attest_run,
    load_signer,
    password_from_env,
)
from orchestrator.attest.run_attestation import read_run
from orchestrator.attest.run_facts import RunFacts
from orchestrator.core.outcomes import RunVerdict
from orchestrator.core.verdict import EXIT_CODES
from orchestrator.errors import ConfigurationError


def matrix_policy(facts: RunFacts, matrix: Path | None) -> tuple[str, str]:
    """The matrix's (sha256, uri): from --matrix, checked against what the run recorded if it did."""
    if matrix is not None:
        try:
            digest = hashlib.sha256(matrix.read_bytes()).hexdigest()
        except OSError as exc:
            raise ConfigurationError(f"--matrix {matrix}: cannot read: {exc.strerror}") from exc
        if facts.matrix_sha256 and facts.matrix_sha256 != digest:
            raise ConfigurationError(
                f"--matrix {matrix}: has sha256 {digest}, but run {facts.run_id} recorded "
                f"{facts.matrix_sha256}: it is not the matrix this run gated"
            )
        return digest, matrix.resolve().as_uri()
    if not facts.matrix_sha256:
        raise ConfigurationError(
            f"run {facts.run_id}: run.json records no matrix digest; "
            "pass the matrix it ran with --matrix FILE"
        )
    source = Path(facts.matrix_source) if facts.matrix_source else None
    uri = (
        source.as_uri()
        if source and source.is_absolute()
        else f"urn:endpoint-testbed:matrix:{facts.matrix_name}"
    )
    return facts.matrix_sha256, uri


def _print(paths: AttestationPaths) -> None:
    out = console()
    if paths.skipped:
        out.print(f"nothing attested: {paths.skipped}", highlight=False)
        return
    out.print(
        f"test result ({paths.result}): {paths.test_result}  sha256:{paths.test_result_sha256}",
        highlight=False,
    )
    out.print(f"verification summary:  {paths.vsa}  sha256:{paths.vsa_sha256}", highlight=False)


def attest(
    run_dir: Annotated[Path, typer.Argument(help="A finished run's directory (holding run.json).")],
    *,
    key: Annotated[Path, typer.Option("--key", help="Signing key (encrypted PKCS#8 PEM).")],
    password_env: PasswordEnvOption = DEFAULT_PASSWORD_ENV,
    verifier_id: Annotated[
        str, typer.Option("--verifier-id", help="URI naming this gate in the VSA.")
    ] = DEFAULT_VERIFIER_ID,
    matrix: Annotated[
        Path | None,
        typer.Option("--matrix", help="The matrix file the run gated (if run.json lacks its digest)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Write signed attestations (in-toto test result + SLSA VSA) for a finished run."""
    with errors_as_exit_codes():
        facts = read_run(run_dir)
        digest, uri = matrix_policy(facts, matrix)
        signer = load_signer(key, password_from_env(password_env))
        paths = attest_run(run_dir, signer, verifier_id=verifier_id, matrix_digest=digest, matrix_uri=uri)
    if json_output:
        sys.stdout.write(json.dumps(paths.as_dict(), indent=2) + "\n")
    else:
        _print(paths)
    if paths.skipped:
        raise typer.Exit(EXIT_CODES[RunVerdict.INCONCLUSIVE])

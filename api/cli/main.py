"""``testbed``: run a gate locally, build golden images, look at hosts.

Exit codes (also for CI): 0 passed, 1 failed (the candidate caused a failure), 2 inconclusive
(the testbed could not answer, or a bug of its own), 3 bad input (nothing was started).

Each command (or command group) lives in its own module; this one only puts them together.
"""

import typer

from api.cli.attest_command import attest
from api.cli.candidate_command import candidate_app
from api.cli.common import ConfigOption, state
from api.cli.expect_command import expect
from api.cli.gate_command import gate
from api.cli.hosts_command import hosts
from api.cli.images_command import images_app
from api.cli.keys_command import keys_app
from api.cli.report_command import report
from api.cli.repro_command import repro
from api.cli.serve_command import serve
from api.cli.submit_command import submit
from api.cli.tokens_command import tokens_app
from api.cli.verify_command import verify

app = typer.Typer(
    help="Endpoint Testbed: a pre-release gate for endpoint security sensors.", no_args_is_help=True
)


@app.callback()
def main(config: ConfigOption = None) -> None:
    state["config"] = config


app.command()(expect)
app.command()(gate)
app.command()(hosts)
app.command()(report)
app.command()(repro)
app.add_typer(images_app, name="images")
app.command()(serve)
app.command()(submit)
app.add_typer(tokens_app, name="tokens")
app.add_typer(keys_app, name="keys")
app.command()(verify)
app.command()(attest)
app.add_typer(candidate_app, name="candidate")

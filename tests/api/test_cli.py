"""``testbed tokens`` and ``testbed serve`` as a person runs them: the real command, a real store."""

import json
import subprocess

import pytest

from tests.api.conftest import TESTBED, service_environment
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.api


def testbed(environment, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TESTBED, *arguments],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        timeout=60,
    )


@pytest.fixture
def environment(tmp_path):
    return service_environment(tmp_path, f"sqlite:///{tmp_path / 'testbed.db'}")


def test_tokens_are_created_listed_and_revoked_from_the_command_line(environment):
    created = testbed(environment, "tokens", "create", "--name", "ci", "--role", "submitter", "--json")
    token = json.loads(created.stdout)
    plain = testbed(environment, "tokens", "create", "--name", "qa", "--role", "viewer")

    revoked = testbed(environment, "tokens", "revoke", token["id"])
    listed = json.loads(testbed(environment, "tokens", "list", "--json").stdout)

    assert created.returncode == plain.returncode == revoked.returncode == 0
    assert token["secret"].startswith(f"tbt_{token['id']}_")
    assert plain.stdout.startswith("tbt_")  # the secret alone on stdout, the words on stderr
    assert "shown only now" in plain.stderr
    assert [(t["name"], t["role"], t["active"]) for t in listed] == [
        ("ci", "submitter", False),
        ("qa", "viewer", True),
    ]
    assert all("secret" not in t for t in listed)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("tokens", "revoke", "0123456789ab"), "no token 0123456789ab"),
        (("tokens", "create", "--name", "bad\tname", "--role", "admin"), "name:"),
    ],
)
def test_bad_token_commands_exit_3_naming_the_problem(environment, arguments, message):
    done = testbed(environment, *arguments)

    assert done.returncode == 3
    assert message in done.stderr


def test_serve_with_an_unusable_database_url_exits_3_before_taking_a_port(environment):
    environment["TESTBED_DATABASE_URL"] = "mysql://root@localhost/testbed"

    done = testbed(environment, "serve", "--port", "1")

    assert done.returncode == 3
    assert "database_url" in done.stderr
    assert "only sqlite and postgresql" in done.stderr

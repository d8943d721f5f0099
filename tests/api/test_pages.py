"""The status page as HTML: a token logs in (cookie session), runs list with verdict badges and
filters, the run's grid, the cell page — with guest text escaped and made terminal-safe."""

import re

import httpx
import pytest

from tests.api.runs_helpers import MIXED, finish, start_run, upload_candidate

pytestmark = pytest.mark.api


@pytest.fixture(scope="module")
def run(service) -> dict:
    with service.client("submitter") as client:
        return finish(client, start_run(client, upload_candidate(client, version="7.2.0-pages"), MIXED)["id"])


@pytest.fixture
def browser(service):
    """A client holding a viewer's session, as a browser after logging in."""
    with service.client(None) as client:
        response = client.post("/login", data={"token": service.tokens["viewer"], "next": "/runs"})
        assert response.status_code == 303
        client.cookies.update({"testbed_session": response.cookies["testbed_session"]})
        yield client


@pytest.mark.parametrize("path", ["/runs", "/runs/some-run", "/runs/some-run/cells/a?x=1"])
def test_pages_send_a_stranger_to_the_login_and_back(anonymous, path):
    response = anonymous.get(path)

    assert response.status_code == 303
    login = httpx.URL(response.headers["location"])
    assert login.path == "/login"
    assert login.params["next"] == path


def test_a_genuine_token_opens_an_httponly_session(service):
    with service.client(None) as client:
        response = client.post(
            "/login", data={"token": service.tokens["viewer"], "next": "/runs?verdict=failed"}
        )

    assert response.status_code == 303
    assert response.headers["location"] == "/runs?verdict=failed"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("testbed_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie


@pytest.mark.parametrize("token", ["", "tbt_000000000000_" + "A" * 43, "not a token"])
def test_a_wrong_token_is_refused_on_the_page(anonymous, token):
    response = anonymous.post("/login", data={"token": token})

    assert response.status_code == 401
    assert "unknown or revoked" in response.text
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_logging_in_never_redirects_off_the_site(service, target):
    with service.client(None) as client:
        response = client.post("/login", data={"token": service.tokens["viewer"], "next": target})

    assert response.headers["location"] == "/runs"


def test_logging_out_ends_the_session(browser):
    response = browser.post("/logout")

    assert response.status_code == 303
    assert (
        'testbed_session=""' in response.headers["set-cookie"]
        or "Max-Age=0" in response.headers["set-cookie"]
    )


def test_the_runs_page_lists_runs_with_verdict_badges_and_filters(browser, run):
    everything = browser.get("/runs")
    failed = browser.get("/runs", params={"verdict": "failed"})
    passed = browser.get("/runs", params={"verdict": "passed", "submitted_by": "test-submitter"})

    assert everything.status_code == 200
    assert everything.headers["content-type"].startswith("text/html")
    assert f'href="/runs/{run["id"]}"' in everything.text
    assert '<span class="badge verdict-failed" data-verdict>failed</span>' in failed.text
    assert run["id"] in failed.text
    assert run["id"] not in passed.text


def test_the_run_page_draws_the_matrix_grid_for_live_updates(browser, run):
    page = browser.get(f"/runs/{run['id']}").text

    assert re.search(r'<th scope="row">sim-linux</th>', page)
    assert re.search(r'<th scope="row">sim-linux-crash</th>', page)
    assert "<th>no co-installed product</th>" in page
    assert 'data-cell-id="sim-linux-crash"' in page
    assert f'data-live-url="/api/v1/runs/{run["id"]}/events?after=' in page
    assert '<script src="/static/run.js" defer></script>' in page
    assert "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]" in page


def test_the_cell_page_shows_the_crash_and_escapes_what_the_guest_printed(browser, run):
    response = browser.get(f"/runs/{run['id']}/cells/sim-linux-crash")
    page = response.text

    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "BUG: kernel NULL pointer dereference in tbs_match_template [testbed_sensor]" in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;&lt;b&gt;bold?&lt;/b&gt;" in page
    assert "<script>document.title" not in page
    assert "\x1b" not in page and "\x00" not in page and "\x07" not in page
    assert "screen cleared by the guest" in page  # the text stays; the escape sequence is gone
    assert '<span class="line crash">' in page
    assert re.search(r'<span class="line crash">[^<]*Oops: 0000 \[#1\]', page)
    assert "serial console (no video device)" in page
    assert f"/api/v1/runs/{run['id']}/cells/sim-linux-crash/evidence/console.log" in page
    assert "install candidate" in page  # phase timings


CONTROL_HANG = "name: sim-control\nimages: [sim-linux-hang]\ntimeouts: {ready: 10, stability: 5}\n"


def test_a_control_image_that_hung_as_declared_shows_as_the_pass_the_verdict_counts(service, browser):
    with service.client("submitter") as client:
        candidate_id = upload_candidate(client, version="7.2.1-control")
        run = finish(client, start_run(client, candidate_id, CONTROL_HANG)["id"])
        listed = client.get("/api/v1/runs", params={"verdict": "passed"}).json()

    (cell,) = run["cells"]
    run_page = browser.get(f"/runs/{run['id']}").text
    cell_page = browser.get(f"/runs/{run['id']}/cells/sim-linux-hang").text

    assert run["verdict"] == "passed"
    assert (cell["outcome"], cell["observed"], cell["expected_outcome"], cell["verdict_outcome"]) == (
        "infra_error",
        "hung",
        "hung",
        "passed",
    )
    assert next(r for r in listed["items"] if r["id"] == run["id"])["cell_counts"] == {"passed": 1}
    drawn = r'<td class="cell state-done outcome-passed as-expected"\s+data-cell-id="sim-linux-hang"'
    assert re.search(drawn, run_page)
    assert '<div class="state" data-field="state">hung (expected)</div>' in run_page
    assert '<span class="badge outcome-passed as-expected">hung (expected)</span>' in cell_page
    assert "declared to end hung; it ended hung, as declared: the verdict counts it as passed" in cell_page


def test_an_unknown_run_or_cell_is_a_404_page(browser, run):
    assert browser.get("/runs/20990101-000000-0000").status_code == 404
    assert browser.get(f"/runs/{run['id']}/cells/nope").status_code == 404


def test_the_static_files_are_served(anonymous):
    script = anonymous.get("/static/run.js")

    assert script.status_code == 200
    assert "EventSource" in script.text
    assert anonymous.get("/static/style.css").status_code == 200

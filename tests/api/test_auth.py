"""Every route but /healthz needs a token; viewers read, submitters also create, admins also manage tokens."""

import pytest

pytestmark = pytest.mark.api

READ_ROUTES = ["/api/v1/candidates", "/api/v1/matrices", "/metrics"]


def test_healthz_needs_no_token_and_names_the_database(anonymous, service):
    response = anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": service.backend,
        "engine": "ready",
        "engine_problem": "",
    }


@pytest.mark.parametrize("path", [*READ_ROUTES, "/api/v1/tokens"])
def test_without_a_token_every_route_answers_401_as_json_with_a_bearer_challenge(anonymous, path):
    response = anonymous.get(path)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["error"] == "unauthorized"
    assert body["problems"] == [{"location": "header", "field": "authorization", "message": body["message"]}]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-token",
        "Bearer tbt_000000000000_" + "A" * 43,  # well-formed, unknown id
        "Bearer",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_an_unknown_or_malformed_token_is_401(service, authorization):
    with service.client(None) as client:
        response = client.get("/api/v1/candidates", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_token_with_a_wrong_secret_but_a_real_id_is_401(service):
    real = service.tokens["admin"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    with service.client(None) as client:
        response = client.get("/api/v1/candidates", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401


@pytest.mark.parametrize("path", READ_ROUTES)
def test_viewers_read(viewer, path):
    assert viewer.get(path).status_code == 200


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/api/v1/matrices", "application/yaml", b"name: x\nimages: [debian12-kernel-n]\n"),
        ("/api/v1/candidates", "multipart/form-data; boundary=x", b"--x--\r\n"),
    ],
)
def test_viewers_cannot_create(viewer, path, content_type, body):
    response = viewer.post(path, content=body, headers={"Content-Type": content_type})

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "submitter" in response.json()["message"]


@pytest.mark.parametrize("role", ["viewer", "submitter"])
def test_only_admins_manage_tokens(service, role):
    with service.client(role) as client:
        listing = client.get("/api/v1/tokens")
        creation = client.post("/api/v1/tokens", json={"name": "sneaky", "role": "admin"})

    assert listing.status_code == 403
    assert creation.status_code == 403


def test_an_admin_creates_a_token_that_works_once_and_is_refused_once_revoked(admin, service):
    created = admin.post("/api/v1/tokens", json={"name": "ci-release", "role": "submitter"})
    assert created.status_code == 201
    token = created.json()["token"]
    secret = created.json()["secret"]
    assert token["role"] == "submitter"
    assert token["active"] is True
    assert secret.startswith(f"tbt_{token['id']}_")

    listed = {t["id"]: t for t in admin.get("/api/v1/tokens").json()}
    assert token["id"] in listed
    assert "secret" not in listed[token["id"]]

    with service.client(None) as client:
        bearer = {"Authorization": f"Bearer {secret}"}
        assert client.get("/api/v1/matrices", headers=bearer).status_code == 200
        revoked = admin.delete(f"/api/v1/tokens/{token['id']}")
        assert revoked.status_code == 200
        assert revoked.json()["active"] is False
        assert client.get("/api/v1/matrices", headers=bearer).status_code == 401

    assert admin.get(f"/api/v1/tokens/{token['id']}").json()["last_used_at"] is not None


def test_token_creation_names_the_bad_field(admin):
    response = admin.post("/api/v1/tokens", json={"name": "", "role": "overlord"})

    assert response.status_code == 422
    fields = {(p["location"], p["field"]) for p in response.json()["problems"]}
    assert fields == {("body", "name"), ("body", "role")}


def test_revoking_an_unknown_token_is_404(admin):
    response = admin.delete("/api/v1/tokens/0123456789ab")

    assert response.status_code == 404
    assert response.json()["problems"][0]["field"] == "token_id"

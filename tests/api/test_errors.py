"""Whatever goes wrong, the answer is JSON naming what was wrong, and never a 5xx."""

import pytest

pytestmark = pytest.mark.api


def test_an_unknown_route_is_a_json_404(admin):
    response = admin.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Not Found", "problems": []}


def test_a_wrong_method_is_a_json_405(admin):
    response = admin.put("/api/v1/candidates")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 10**20}, "offset"),
        ({"limit": "many"}, "limit"),
        ({"name": "no spaces\x00"}, "name"),
    ],
)
def test_bad_query_parameters_are_422_naming_the_parameter(viewer, params, field):
    response = viewer.get("/api/v1/candidates", params=params)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"
    assert [(p["location"], p["field"]) for p in response.json()["problems"]] == [("query", field)]


def test_a_body_that_is_not_json_is_422(admin):
    response = admin.post(
        "/api/v1/tokens", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["problems"][0]["location"] == "body"


def test_a_json_body_that_is_not_even_text_is_400_about_the_body(admin):
    response = admin.post(
        "/api/v1/tokens", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert response.json()["problems"][0]["location"] == "body"


def test_the_openapi_document_is_served_under_the_api_prefix(anonymous):
    document = anonymous.get("/api/v1/openapi.json").json()

    assert document["openapi"].startswith("3.")
    assert {"/api/v1/candidates", "/api/v1/matrices", "/api/v1/tokens", "/healthz", "/metrics"} <= set(
        document["paths"]
    )
    assert "MatrixSpec" in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["token"]["scheme"] == "bearer"

"""Matrices over HTTP: YAML or JSON, validated by the gate's own parser, every problem named by field."""

import json

import pytest

pytestmark = pytest.mark.api

YAML = """\
# two kernels, rebooted twice
name: api-kernels
images: [debian12-kernel-n, debian12-kernel-n1]
reboots: 2
timeouts: {ready: 300, stability: 10}
"""


def post_yaml(client, text: str, content_type: str = "application/yaml"):
    return client.post("/api/v1/matrices", content=text.encode(), headers={"Content-Type": content_type})


def test_yaml_is_stored_as_sent_with_its_spec_and_the_same_text_is_the_same_matrix(submitter):
    first = post_yaml(submitter, YAML)
    again = post_yaml(submitter, YAML)

    assert first.status_code == 201
    assert again.status_code == 200
    body = first.json()
    assert body["id"] == again.json()["id"]
    assert body["text"] == YAML  # comments and all
    assert body["name"] == "api-kernels"
    assert body["spec"]["images"] == ["debian12-kernel-n", "debian12-kernel-n1"]
    assert body["spec"]["timeouts"]["install"] == 900.0  # defaults filled in
    assert submitter.get(f"/api/v1/matrices/{body['id']}").json() == body


def test_json_is_accepted_even_where_yaml_would_choke(submitter):
    text = '{\n\t"name": "api-json",\n\t"images": ["debian12-kernel-n"],\n\t"fail_fast": true\n}'

    response = post_yaml(submitter, text, "application/json")

    assert response.status_code == 201
    assert response.json()["spec"]["fail_fast"] is True
    assert response.json()["text"] == text


@pytest.mark.parametrize(
    ("body", "content_type", "fields"),
    [
        (
            json.dumps({"name": "Bad Name", "images": [], "timeouts": {"ready": 1}, "colour": "red"}),
            "application/json",
            {"name", "images", "timeouts.ready", "colour"},
        ),
        ("name: dup\nimages: [a, a]\nreboots: 0\n", "application/yaml", {"images", "reboots"}),
        ("name: x\nimages: [a]\ntimeouts: {ready: .nan}\n", "application/yaml", {"timeouts.ready"}),
        ("- just\n- a list\n", "application/yaml", {""}),
        ("name: [unclosed\n", "application/yaml", {""}),
        ('{"name": ', "application/json", {""}),
    ],
)
def test_a_bad_matrix_is_422_naming_each_field(submitter, body, content_type, fields):
    response = post_yaml(submitter, body, content_type)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"
    assert {p["field"] for p in response.json()["problems"]} == fields


def test_a_matrix_in_another_media_type_is_415(submitter):
    response = post_yaml(submitter, YAML, "application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["problems"][0] == {
        "location": "header",
        "field": "content-type",
        "message": "send application/json or application/yaml",
    }


def test_a_huge_matrix_is_413(submitter):
    response = post_yaml(submitter, YAML + "#" * (1 << 20))

    assert response.status_code == 413


def test_text_that_is_not_utf8_is_422(submitter):
    response = submitter.post(
        "/api/v1/matrices", content=b"name: \xff\xfe\n", headers={"Content-Type": "application/yaml"}
    )

    assert response.status_code == 422
    assert "UTF-8" in response.json()["problems"][0]["message"]


def test_listing_filters_by_name_and_an_unknown_matrix_is_404(submitter, viewer):
    created = post_yaml(submitter, YAML.replace("api-kernels", "api-listed")).json()

    listed = viewer.get("/api/v1/matrices", params={"name": "api-listed"}).json()
    missing = viewer.get("/api/v1/matrices/" + "f" * 64)

    assert [m["id"] for m in listed["items"]] == [created["id"]]
    assert listed["total"] == 1
    assert "text" not in listed["items"][0]
    assert missing.status_code == 404
    assert missing.json()["problems"][0]["field"] == "matrix_id"

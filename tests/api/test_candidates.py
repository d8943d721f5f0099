"""Candidate uploads over HTTP: stored content-addressed and immutable; bad bundles refused with
the member named, nothing stored changing; a size limit enforced while the body streams in."""

import hashlib
import os

import pytest

from tests.api.bundles import (
    MALICIOUS,
    PACKAGE,
    Member,
    candidate_files,
    files,
    good_bundle,
    manifest,
    tar_gz,
)
from tests.api.conftest import MAX_MEMBERS, UPLOAD_LIMIT_MIB

pytestmark = pytest.mark.api


def upload(client, bundle: bytes, field: str = "bundle"):
    return client.post("/api/v1/candidates", files={field: ("candidate.tar.gz", bundle, "application/gzip")})


def stored_state(service, client) -> tuple[dict[str, str], list[str]]:
    """Every stored file with its sha256 and mode, and every candidate the API lists."""
    tree = {}
    for path in service.candidates_dir.rglob("*"):
        relative = path.relative_to(service.candidates_dir)
        if path.is_file() and not relative.parts[0].startswith("."):  # .incoming, .staging come and go
            tree[str(relative)] = (
                f"{hashlib.sha256(path.read_bytes()).hexdigest()} {oct(path.stat().st_mode)}"
            )
    listed = sorted(c["id"] for c in client.get("/api/v1/candidates", params={"limit": 500}).json()["items"])
    return tree, listed


def test_a_good_bundle_is_stored_read_only_under_its_id(submitter, service):
    response = upload(submitter, good_bundle(version="1.0.0"))

    assert response.status_code in (200, 201)
    body = response.json()
    assert body["name"] == "sensor"
    assert body["version"] == "1.0.0"
    assert body["created_by"] == "test-submitter"
    pinned = {a["name"]: a["sha256"] for a in body["artifacts"]}
    assert pinned["sensor-linux"] == hashlib.sha256(PACKAGE).hexdigest()
    assert response.headers["location"] == f"/api/v1/candidates/{body['id']}"
    stored = service.candidates_dir / body["id"]
    assert sorted(str(p.relative_to(stored)) for p in stored.rglob("*") if p.is_file()) == [
        "candidate.yaml",
        "content/C-291.bin",
        "pkg/sensor-linux.tar.gz",
    ]
    assert oct((stored / "pkg/sensor-linux.tar.gz").stat().st_mode & 0o777) == "0o444"
    assert submitter.get(f"/api/v1/candidates/{body['id']}").json() == body


def test_the_same_bytes_are_the_same_candidate_and_so_is_the_same_candidate_packed_again(submitter):
    first = upload(submitter, good_bundle(version="2.0.0", mtime=1))
    again = upload(submitter, good_bundle(version="2.0.0", mtime=1))
    repacked = upload(submitter, tar_gz(files(candidate_files("2.0.0"), prefix="./"), mtime=99))

    assert first.status_code == 201
    assert again.status_code == 200
    assert repacked.status_code == 200
    assert first.json()["id"] == again.json()["id"] == repacked.json()["id"]


def test_a_bundle_wrapped_in_one_directory_is_accepted(submitter):
    response = upload(submitter, tar_gz(files(candidate_files("2.1.0"), prefix="sensor-2.1.0/")))

    assert response.status_code == 201
    assert response.json()["version"] == "2.1.0"


def test_listing_filters_by_name_and_pages(submitter, viewer):
    for version in ("3.0.0", "3.0.1", "3.0.2"):
        assert upload(submitter, good_bundle(version=version)).status_code in (200, 201)

    page = viewer.get("/api/v1/candidates", params={"name": "sensor", "limit": 2, "offset": 1}).json()
    nobody = viewer.get("/api/v1/candidates", params={"name": "other"}).json()

    assert page["limit"] == 2
    assert page["offset"] == 1
    assert len(page["items"]) == 2
    assert page["total"] >= 3
    assert nobody == {"items": [], "total": 0, "limit": 50, "offset": 0}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_malicious_bundle_is_refused_naming_the_member_and_nothing_stored_changes(submitter, service, case):
    assert upload(submitter, good_bundle(version="4.0.0")).status_code in (200, 201)
    before = stored_state(service, submitter)
    members, offending = MALICIOUS[case]

    response = upload(submitter, tar_gz(members()))

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    assert {"location": "bundle", "field": offending} == {
        key: body["problems"][0][key] for key in ("location", "field")
    }
    assert stored_state(service, submitter) == before
    assert list((service.candidates_dir / ".staging").iterdir()) == []
    assert list((service.candidates_dir / ".incoming").iterdir()) == []


def test_too_many_members_are_refused(submitter):
    many = [*files(candidate_files()), *(Member(f"extra/{i}", b"x") for i in range(MAX_MEMBERS))]

    response = upload(submitter, tar_gz(many))

    assert response.status_code == 422
    assert f"more than {MAX_MEMBERS} members" in response.json()["problems"][0]["message"]


def test_a_bundle_over_the_limit_is_refused_with_413_and_leaves_nothing(submitter, service):
    before = stored_state(service, submitter)
    too_big = os.urandom((UPLOAD_LIMIT_MIB << 20) + 4096)  # random bytes do not compress

    response = upload(submitter, tar_gz([*files(candidate_files()), Member("content/big.bin", too_big)]))

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert str(UPLOAD_LIMIT_MIB << 20) in response.json()["problems"][0]["message"]
    assert stored_state(service, submitter) == before
    assert list((service.candidates_dir / ".incoming").iterdir()) == []


def test_a_manifest_that_pins_other_bytes_is_refused_naming_the_field(submitter, service):
    tampered = candidate_files()
    tampered["pkg/sensor-linux.tar.gz"] = PACKAGE + b"tampered"

    response = upload(submitter, tar_gz(files(tampered)))

    assert response.status_code == 422
    problem = response.json()["problems"][0]
    assert (problem["location"], problem["field"]) == ("candidate.yaml", "artifacts[0].sha256")
    assert "pkg/sensor-linux.tar.gz has sha256" in problem["message"]
    assert str(service.state_dir) not in problem["message"]  # no server path leaks out


def test_a_manifest_with_a_bad_field_is_refused_naming_it(submitter):
    entries = candidate_files()
    entries["candidate.yaml"] = manifest(version="")

    response = upload(submitter, tar_gz(files(entries)))

    assert response.status_code == 422
    assert ("candidate.yaml", "version") in {(p["location"], p["field"]) for p in response.json()["problems"]}


@pytest.mark.parametrize(
    ("bundle", "field"),
    [
        (b"this is not a tar.gz", ""),
        (tar_gz(files({"readme.txt": b"no manifest"})), "candidate.yaml"),
    ],
)
def test_something_that_is_not_a_candidate_bundle_is_refused(submitter, bundle, field):
    response = upload(submitter, bundle)

    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == field


def test_the_file_must_be_in_the_bundle_field(submitter):
    response = upload(submitter, good_bundle(), field="file")

    assert response.status_code == 422
    assert response.json()["problems"][0] == {
        "location": "body",
        "field": "bundle",
        "message": "a file field named 'bundle' is required",
    }


def test_an_upload_that_is_not_multipart_is_415(submitter):
    response = submitter.post(
        "/api/v1/candidates", content=good_bundle(), headers={"Content-Type": "application/gzip"}
    )

    assert response.status_code == 415
    assert response.json()["problems"][0]["field"] == "content-type"


def test_an_unknown_candidate_is_404_and_a_malformed_id_is_422(viewer):
    missing = viewer.get("/api/v1/candidates/" + "0" * 64)
    malformed = viewer.get("/api/v1/candidates/not-a-digest")

    assert missing.status_code == 404
    assert missing.json()["problems"][0]["field"] == "candidate_id"
    assert malformed.status_code == 422
    assert malformed.json()["problems"][0]["field"] == "candidate_id"

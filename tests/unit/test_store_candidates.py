"""Stored candidates: content-addressed by their canonical manifest, read-only, and untouched by
any upload that is refused."""

import hashlib
import stat
import threading

import pytest
import yaml

from orchestrator.candidate import CandidateManifest
from orchestrator.store import (
    BundleLimits,
    CandidateStore,
    RejectedInputError,
    candidate_id_of,
    open_database,
)
from orchestrator.store.models import CandidateRow
from tests.api.bundles import (
    CONTENT,
    MALICIOUS,
    PACKAGE,
    candidate_files,
    files,
    good_bundle,
    manifest,
    tar_gz,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'testbed.db'}"


@pytest.fixture
def candidates(tmp_path, database_url):
    database = open_database(database_url)
    yield CandidateStore(database, tmp_path / "candidates", BundleLimits(max_members=20))
    database.close()


def add(candidates, tmp_path, data: bytes, name: str = "upload.tar.gz"):
    bundle = tmp_path / name
    bundle.write_bytes(data)
    return candidates.add_bundle(bundle, created_by="qa")


def snapshot(root) -> dict[str, str]:
    """Every file under the store (but the scratch directories), with its content and mode."""
    return {
        str(
            path.relative_to(root)
        ): f"{hashlib.sha256(path.read_bytes()).hexdigest()} {stat.filemode(path.stat().st_mode)}"
        for path in root.rglob("*")
        if path.is_file() and not path.relative_to(root).parts[0].startswith(".")
    }


def test_the_id_is_the_sha256_of_the_canonical_manifest():
    data = yaml.safe_load(manifest())
    reordered = {key: data[key] for key in reversed(list(data))}

    assert candidate_id_of(CandidateManifest.model_validate(data)) == candidate_id_of(
        CandidateManifest.model_validate(reordered)
    )
    assert candidate_id_of(CandidateManifest.model_validate(data)) != candidate_id_of(
        CandidateManifest.model_validate({**data, "version": "7.1.1"})
    )


def test_a_candidate_is_stored_read_only_with_only_its_manifest_and_artifacts(candidates, tmp_path):
    extra = files({**candidate_files(), "notes/README": b"not an artifact"})

    record, created = add(candidates, tmp_path, tar_gz(extra))

    stored = tmp_path / "candidates" / record.candidate_id
    assert created is True
    assert record.stored_path == str(stored)
    assert record.created_by == "qa"
    assert record.bundle_sha256 == hashlib.sha256((tmp_path / "upload.tar.gz").read_bytes()).hexdigest()
    assert [(a.name, a.sha256) for a in record.artifacts] == [
        ("sensor-linux", hashlib.sha256(PACKAGE).hexdigest()),
        ("channel-291", hashlib.sha256(CONTENT).hexdigest()),
    ]
    assert snapshot(stored) == {
        "candidate.yaml": f"{hashlib.sha256(manifest()).hexdigest()} -r--r--r--",
        "pkg/sensor-linux.tar.gz": f"{hashlib.sha256(PACKAGE).hexdigest()} -r--r--r--",
        "content/C-291.bin": f"{hashlib.sha256(CONTENT).hexdigest()} -r--r--r--",
    }
    assert stat.S_IMODE(stored.stat().st_mode) == 0o555
    assert candidates.get(record.candidate_id) == record


def test_the_same_bytes_and_the_same_candidate_packed_again_are_one_candidate(candidates, tmp_path):
    first, created_first = add(candidates, tmp_path, good_bundle(mtime=1), "a.tar.gz")
    same, created_same = add(candidates, tmp_path, good_bundle(mtime=1), "b.tar.gz")
    repacked, created_repacked = add(
        candidates, tmp_path, tar_gz(files(candidate_files(), "pkg-7/"), 5), "c.tgz"
    )

    assert (created_first, created_same, created_repacked) == (True, False, False)
    assert first == same == repacked
    assert candidates.list_candidates() == ([first], 1)


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_refused_bundle_changes_nothing_stored(candidates, tmp_path, case):
    add(candidates, tmp_path, good_bundle(version="1.0.0"))
    before = snapshot(tmp_path / "candidates")
    listed = candidates.list_candidates()
    members, offending = MALICIOUS[case]

    with pytest.raises(RejectedInputError) as refused:
        add(candidates, tmp_path, tar_gz(members()), "evil.tar.gz")

    assert refused.value.problems[0].field == offending
    assert snapshot(tmp_path / "candidates") == before
    assert candidates.list_candidates() == listed
    assert list((tmp_path / "candidates" / ".staging").iterdir()) == []


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        (
            {**candidate_files(), "pkg/sensor-linux.tar.gz": PACKAGE + b"!"},
            ("candidate.yaml", "artifacts[0].sha256"),
        ),
        (
            {"candidate.yaml": manifest(), "content/C-291.bin": CONTENT},
            ("candidate.yaml", "artifacts[0].path"),
        ),
        (
            {**candidate_files(), "candidate.yaml": manifest(version="")},
            ("candidate.yaml", "version"),
        ),
        (
            {**candidate_files(), "candidate.yaml": manifest(owner="nobody")},
            ("candidate.yaml", "owner"),
        ),
        (
            {**candidate_files(), "candidate.yaml": manifest(version="7\x00")},
            ("candidate.yaml", "version"),
        ),
        (
            {**candidate_files(), "candidate.yaml": b"name: [unclosed\n"},
            ("candidate.yaml", ""),
        ),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_field_without_server_paths(
    candidates, tmp_path, entries, problem
):
    with pytest.raises(RejectedInputError) as refused:
        add(candidates, tmp_path, tar_gz(files(entries)))

    found = refused.value.problems[0]
    assert (found.location, found.field) == problem
    assert str(tmp_path) not in found.message
    assert candidates.list_candidates() == ([], 0)
    assert [p.name for p in (tmp_path / "candidates").iterdir()] == [".staging"]


def test_a_tree_stored_before_a_crash_gets_its_record_on_the_next_upload(candidates, tmp_path):
    record, _ = add(candidates, tmp_path, good_bundle())
    with candidates._database.session(write=True) as session:  # the row lost, as by a kill -9 between the two
        session.delete(session.get(CandidateRow, record.candidate_id))

    again, created = add(candidates, tmp_path, good_bundle())

    assert created is True
    assert again.candidate_id == record.candidate_id


def test_leftovers_of_a_killed_upload_are_swept(candidates, tmp_path):
    stale = tmp_path / "candidates" / ".staging" / "dead" / "assembled"
    stale.mkdir(parents=True)
    (stale / "artifact").write_bytes(b"x")
    stale.chmod(0o555)
    (candidates.incoming_dir / "upload-1.part").write_bytes(b"half")
    add(candidates, tmp_path, good_bundle())
    kept = snapshot(tmp_path / "candidates")

    candidates.sweep_leftovers()

    assert not (tmp_path / "candidates" / ".staging").exists()
    assert not (tmp_path / "candidates" / ".incoming").exists()
    assert snapshot(tmp_path / "candidates") == kept


def test_listing_by_name_pages_newest_first(candidates, tmp_path):
    made = [add(candidates, tmp_path, good_bundle(version=f"1.{n}"), f"{n}.tgz")[0] for n in range(3)]

    page, total = candidates.list_candidates(name="sensor", limit=2, offset=0)

    assert total == 3
    assert [r.version for r in page] == [made[2].version, made[1].version]
    assert candidates.list_candidates(name="other") == ([], 0)


def test_one_candidate_uploaded_by_many_at_once_is_stored_once(candidates, tmp_path):
    bundles = []
    for index in range(6):
        bundles.append(tmp_path / f"same-{index}.tar.gz")
        bundles[-1].write_bytes(good_bundle(mtime=index))  # other bytes, the same candidate
    outcomes: list[tuple[object, bool]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(bundles))

    def upload(bundle):
        start.wait()
        try:
            outcomes.append(candidates.add_bundle(bundle))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(bundle,)) for bundle in bundles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(created for _, created in outcomes) == [False] * 5 + [True]
    assert len({record.candidate_id for record, _ in outcomes}) == 1
    assert candidates.list_candidates()[1] == 1

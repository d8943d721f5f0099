"""candidate.yaml: every artifact must exist inside the candidate directory and match its pinned digest."""

import hashlib

import pytest
import yaml

from orchestrator.candidate import ArtifactKind, load_candidate, sha256_of
from orchestrator.errors import ConfigurationError

pytestmark = pytest.mark.unit

PACKAGE = b"sensor package bytes\n"
CONTENT = b"\x00" * 64


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package(**changes):
    entry = {
        "name": "sensor-linux",
        "kind": "sensor_package",
        "os_family": "linux",
        "path": "pkg/sensor-linux.tar.gz",
        "sha256": digest(PACKAGE),
    }
    entry.update(changes)
    return entry


def content(**changes):
    entry = {"name": "channel-291", "kind": "content", "path": "content/C-291.bin", "sha256": digest(CONTENT)}
    entry.update(changes)
    return entry


@pytest.fixture
def candidate_dir(tmp_path):
    """A valid candidate; tests rewrite its manifest or files to break it."""
    root = tmp_path / "candidate"
    (root / "pkg").mkdir(parents=True)
    (root / "content").mkdir()
    (root / "pkg" / "sensor-linux.tar.gz").write_bytes(PACKAGE)
    (root / "content" / "C-291.bin").write_bytes(CONTENT)
    write_manifest(root, [package(), content()])
    return root


def write_manifest(root, artifacts, **top):
    manifest = {"name": "sensor", "version": "7.1.0", "artifacts": artifacts, **top}
    (root / "candidate.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def problems(path) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_candidate(path)
    return str(caught.value)


# -- a valid candidate ----------------------------------------------------------------------------


@pytest.mark.parametrize("point_at", ["directory", "manifest"])
def test_valid_candidate(candidate_dir, point_at):
    path = candidate_dir if point_at == "directory" else candidate_dir / "candidate.yaml"
    candidate = load_candidate(path)
    assert (candidate.name, candidate.version) == ("sensor", "7.1.0")
    assert candidate.root == candidate_dir.resolve()
    sensor = candidate.sensor_package("linux")
    assert sensor is not None
    assert (sensor.name, sensor.kind) == ("sensor-linux", ArtifactKind.SENSOR_PACKAGE)
    assert candidate.path_of(sensor) == candidate_dir.resolve() / "pkg" / "sensor-linux.tar.gz"
    assert candidate.sensor_package("windows") is None
    assert [a.name for a in candidate.content_files()] == ["channel-291"]
    assert [a.name for a in candidate.artifacts_for("linux")] == ["sensor-linux", "channel-291"]
    assert [a.name for a in candidate.artifacts_for("windows")] == ["channel-291"]


def test_facts_give_families_and_every_digest(candidate_dir):
    (candidate_dir / "pkg" / "sensor-windows.msi").write_bytes(b"msi")
    write_manifest(
        candidate_dir,
        [
            package(),
            package(
                name="sensor-windows",
                os_family="windows",
                path="pkg/sensor-windows.msi",
                sha256=digest(b"msi"),
            ),
            content(),
        ],
    )
    facts = load_candidate(candidate_dir).facts()
    assert (facts.name, facts.version) == ("sensor", "7.1.0")
    assert facts.os_families == frozenset({"linux", "windows"})
    assert dict(facts.artifact_digests) == {
        "sensor-linux": digest(PACKAGE),
        "sensor-windows": digest(b"msi"),
        "channel-291": digest(CONTENT),
    }


def test_content_only_candidate_has_no_family(candidate_dir):
    write_manifest(candidate_dir, [content()])
    assert load_candidate(candidate_dir).facts().os_families == frozenset()


def test_sha256_of_reads_the_whole_file(tmp_path):
    big = tmp_path / "big.bin"
    data = bytes(range(256)) * 5000  # more than one read block
    big.write_bytes(data)
    assert sha256_of(big) == digest(data)


# -- what is refused ----------------------------------------------------------------------------------


def test_missing_manifest(tmp_path):
    message = problems(tmp_path)
    assert message == f"candidate: {tmp_path / 'candidate.yaml'} not found"


def test_missing_manifest_file_named_directly(tmp_path):
    assert "not found" in problems(tmp_path / "nope.yaml")


def test_manifest_that_is_not_yaml(candidate_dir):
    (candidate_dir / "candidate.yaml").write_text("name: [sensor\n")
    assert problems(candidate_dir).startswith(f"candidate: {candidate_dir / 'candidate.yaml'}: ")


def test_digest_mismatch_names_the_field_and_both_digests(candidate_dir):
    (candidate_dir / "pkg" / "sensor-linux.tar.gz").write_bytes(b"tampered")
    message = problems(candidate_dir)
    assert (
        f"artifacts[0].sha256: pkg/sensor-linux.tar.gz has sha256 {digest(b'tampered')}, "
        f"the manifest pins {digest(PACKAGE)}" in message
    )
    assert "artifacts[1]" not in message


def test_missing_artifact_file(candidate_dir):
    (candidate_dir / "content" / "C-291.bin").unlink()
    message = problems(candidate_dir)
    assert (
        f"artifacts[1].path: file not found: {candidate_dir.resolve() / 'content' / 'C-291.bin'}" in message
    )


@pytest.mark.parametrize("path", ["../outside.bin", "pkg/../../outside.bin", "/etc/hostname", "link-out.bin"])
def test_paths_escaping_the_directory_are_refused(candidate_dir, path):
    outside = candidate_dir.parent / "outside.bin"
    outside.write_bytes(PACKAGE)
    (candidate_dir / "link-out.bin").symlink_to(outside)
    write_manifest(candidate_dir, [package(path=path)])
    message = problems(candidate_dir)
    assert f"artifacts[0].path: {path!r} points outside the candidate directory" in message


def test_duplicate_names_flag_every_use(candidate_dir):
    write_manifest(candidate_dir, [package(), content(name="sensor-linux")])
    message = problems(candidate_dir)
    assert "artifacts[0].name: 'sensor-linux' is used more than once" in message
    assert "artifacts[1].name: 'sensor-linux' is used more than once" in message


@pytest.mark.parametrize(
    ("artifacts", "top", "fragment"),
    [
        ([package(os_family=None)], {}, "artifacts.0: Value error, a sensor_package must name its os_family"),
        ([package(os_family="")], {}, "artifacts.0: Value error, a sensor_package must name its os_family"),
        ([package(sha256="ABC")], {}, "artifacts.0.sha256: String should match pattern"),
        ([package(kind="driver")], {}, "artifacts.0.kind: Input should be 'sensor_package' or 'content'"),
        ([package(), content(path="")], {}, "artifacts.1.path: String should have at least 1 character"),
        ([package(colour="red")], {}, "artifacts.0.colour: Extra inputs are not permitted"),
        ([], {}, "artifacts: List should have at least 1 item"),
        ([package()], {"signed_by": "me"}, "signed_by: Extra inputs are not permitted"),
        ([package()], {"name": "bad name"}, "name: String should match pattern"),
    ],
    ids=[
        "package-without-family",
        "package-with-empty-family",
        "bad-digest",
        "unknown-kind",
        "empty-path",
        "unknown-artifact-field",
        "no-artifacts",
        "unknown-field",
        "bad-name",
    ],
)
def test_invalid_manifest_names_the_field(candidate_dir, artifacts, top, fragment):
    write_manifest(candidate_dir, artifacts, **top)
    message = problems(candidate_dir)
    assert message.startswith(f"candidate: {candidate_dir / 'candidate.yaml'} is invalid:\n")
    assert fragment in message


def test_every_file_problem_is_reported_at_once(candidate_dir):
    (candidate_dir / "pkg" / "sensor-linux.tar.gz").write_bytes(b"tampered")
    write_manifest(candidate_dir, [package(), content(path="content/missing.bin"), content(path="../x")])
    message = problems(candidate_dir)
    for fragment in [
        "artifacts[0].sha256",
        "artifacts[1].path: file not found",
        "artifacts[2].path",
        "artifacts[2].name",
    ]:
        assert fragment in message


def test_two_artifacts_with_the_same_file_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"one")
    (tmp_path / "x.bin").write_bytes(b"two")
    (tmp_path / "pkg.tar.gz").write_bytes(b"pkg")
    digest = {
        name: hashlib.sha256(data).hexdigest()
        for name, data in [("one", b"one"), ("two", b"two"), ("pkg", b"pkg")]
    }
    (tmp_path / "candidate.yaml").write_text(
        "name: c\nversion: '1'\nartifacts:\n"
        "  - {name: pkg, kind: sensor_package, os_family: linux, path: pkg.tar.gz, "
        f"sha256: {digest['pkg']}}}\n"
        f"  - {{name: one, kind: content, path: a/x.bin, sha256: {digest['one']}}}\n"
        f"  - {{name: two, kind: content, path: x.bin, sha256: {digest['two']}}}\n"
    )

    with pytest.raises(
        ConfigurationError, match=r"artifacts\[1\]\.path: file name 'x.bin' is used by another"
    ):
        load_candidate(tmp_path)


def test_health_check_and_sensor_version_belong_to_sensor_packages(candidate_dir):
    write_manifest(candidate_dir, [package(), content(health_check="true")])
    assert "sensor_version and health_check belong to sensor_package artifacts" in problems(candidate_dir)


@pytest.mark.parametrize(
    ("service", "refused"),
    [
        ("TestbedSensor", False),
        ("csagent.sys-2", False),
        ("sc query TestbedSensor", True),  # a command, as a Linux health check would be
        ("Sensor'; Stop-Computer; '", True),
        ("x" * 129, True),
    ],
)
def test_a_windows_sensors_health_check_must_be_a_service_name(candidate_dir, service, refused):
    (candidate_dir / "pkg" / "sensor.msi").write_bytes(PACKAGE)
    windows = package(name="sensor-windows", os_family="windows", path="pkg/sensor.msi", health_check=service)
    write_manifest(candidate_dir, [package(), windows, content()])
    if not refused:
        assert load_candidate(candidate_dir).sensor_package("windows").health_check == service
        return
    message = problems(candidate_dir)
    assert "artifacts.1: " in message
    assert f"health_check {service!r}: a Windows sensor's health check is the name of its service" in message


def test_two_packages_of_one_family_need_distinct_sensor_versions(candidate_dir):
    (candidate_dir / "pkg" / "old.tar.gz").write_bytes(PACKAGE)
    write_manifest(candidate_dir, [package(), package(name="sensor-old", path="pkg/old.tar.gz"), content()])
    assert "artifacts[1].sensor_version: two linux sensor packages are both version 7.1.0" in problems(
        candidate_dir
    )


def test_sensor_versions_pick_their_package(candidate_dir):
    (candidate_dir / "pkg" / "old.tar.gz").write_bytes(PACKAGE)
    old = package(name="sensor-old", path="pkg/old.tar.gz", sensor_version="7.0.3", health_check="true")
    write_manifest(candidate_dir, [package(), old, content()])
    candidate = load_candidate(candidate_dir)
    assert candidate.facts().sensor_versions == {"linux": ("7.0.3", "7.1.0")}
    assert candidate.sensor_package("linux").name == "sensor-linux"  # the candidate's own release
    assert candidate.sensor_package("linux", "7.0.3").health_check == "true"
    assert candidate.sensor_package("linux", "6.0") is None


def test_content_schema_declares_count_fields(candidate_dir):
    schema = {"header_size": 64, "count_fields": [{"name": "field_count", "offset": 16, "size": 4}]}
    write_manifest(candidate_dir, [package(), content(schema=schema)])
    (channel,) = load_candidate(candidate_dir).content_files()
    assert channel.schema_ is not None
    assert channel.schema_.count_fields[0].offset == 16
    negative = {"count_fields": [{"name": "n", "offset": -1}]}
    write_manifest(candidate_dir, [package(), content(schema=negative)])
    assert "artifacts.1.schema.count_fields.0.offset" in problems(candidate_dir)

"""Bundle members are judged before anything is unpacked; only regular files are ever written."""

import io
import tarfile

import pytest

from orchestrator.store.bundles import (
    BundleLimits,
    check_members,
    member_problem,
    normalized_name,
    unpack_bundle,
)
from orchestrator.store.problems import RejectedInputError
from tests.api.bundles import MALICIOUS, Member, candidate_files, files, tar_gz

pytestmark = pytest.mark.unit

LIMITS = BundleLimits(max_members=10, max_unpacked_bytes=10_000)


def info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = size
    member.linkname = linkname
    return member


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (info("pkg/sensor.deb"), None),
        (info("pkg", tarfile.DIRTYPE), None),
        (info("./candidate.yaml"), None),
        (info("a..b/c..d"), None),  # dots inside a name are no climb
        (info("/etc/passwd"), "absolute paths are not allowed"),
        (info("\\windows\\system32"), "absolute paths are not allowed"),
        (info("C:/evil"), "absolute paths are not allowed"),
        (info("../up"), "'..' would leave the bundle"),
        (info("a/../../up"), "'..' would leave the bundle"),
        (info("a\\..\\..\\up"), "'..' would leave the bundle"),
        (info("link", tarfile.SYMTYPE, linkname="/etc"), "links are not allowed (it points to '/etc')"),
        (info("hard", tarfile.LNKTYPE, linkname="x"), "links are not allowed (it points to 'x')"),
        (info("tty", tarfile.CHRTYPE), "devices and FIFOs are not allowed"),
        (info("sda", tarfile.BLKTYPE), "devices and FIFOs are not allowed"),
        (info("fifo", tarfile.FIFOTYPE), "devices and FIFOs are not allowed"),
        (info("odd", b"Z"), "only regular files and directories are allowed"),  # a type tar does not know
        (info(""), "the name is empty or holds control characters"),
        (info("bell\x07"), "the name is empty or holds control characters"),
    ],
)
def test_member_rules(member, problem):
    assert member_problem(member) == problem


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("./a//b/", "a/b"), ("a/./b", "a/b"), (".", "."), ("./", ".")],
)
def test_member_names_are_compared_as_they_would_land(name, normalized):
    assert normalized_name(name) == normalized


def test_every_problem_is_reported_with_its_member():
    problems = check_members(
        [info("ok"), info("/abs"), info("./ok"), info("dev", tarfile.CHRTYPE), info("./", tarfile.DIRTYPE)],
        LIMITS,
    )

    assert [(p.location, p.field, p.message) for p in problems] == [
        ("bundle", "/abs", "absolute paths are not allowed"),
        ("bundle", "./ok", "'ok' appears more than once"),
        ("bundle", "dev", "devices and FIFOs are not allowed"),
    ]


def test_too_many_members_stop_the_check():
    problems = check_members((info(f"f{i}") for i in range(1000)), LIMITS)

    assert [(p.field, p.message) for p in problems] == [("", "more than 10 members")]


def test_more_bytes_than_allowed_once_unpacked_are_refused_naming_the_member_that_passes_the_limit():
    problems = check_members([info("a", size=6000), info("b", size=5000), info("c", size=1)], LIMITS)

    assert [(p.field, p.message) for p in problems] == [("b", "the bundle unpacks to more than 10000 bytes")]


def write(tmp_path, members: list[Member]):
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(tar_gz(members))
    return bundle


def test_a_good_bundle_unpacks_to_regular_files(tmp_path):
    root = unpack_bundle(write(tmp_path, files(candidate_files())), tmp_path / "out", LIMITS)

    assert root == tmp_path / "out"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "candidate.yaml",
        "content/C-291.bin",
        "pkg/sensor-linux.tar.gz",
    ]


def test_a_bundle_wrapped_in_one_directory_is_found_inside_it(tmp_path):
    root = unpack_bundle(
        write(tmp_path, files(candidate_files(), prefix="sensor-7/")), tmp_path / "out", LIMITS
    )

    assert root == tmp_path / "out" / "sensor-7"


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_a_malicious_bundle_writes_nothing(tmp_path, case):
    members, offending = MALICIOUS[case]

    with pytest.raises(RejectedInputError) as refused:
        unpack_bundle(write(tmp_path, members()), tmp_path / "out", BundleLimits())

    assert refused.value.problems[0].field == offending
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "outside.txt").exists()


def test_a_file_where_a_directory_must_be_is_refused(tmp_path):
    bundle = write(
        tmp_path, [*files(candidate_files()), Member("x", b"file"), Member("x/y", b"under a file")]
    )

    with pytest.raises(RejectedInputError) as refused:
        unpack_bundle(bundle, tmp_path / "out", LIMITS)

    assert refused.value.problems[0].field == "x/y"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an archive at all", "not a readable tar.gz archive"),
        (tar_gz(files(candidate_files()))[:200], "not a readable tar.gz archive"),
    ],
)
def test_what_is_not_a_tar_archive_is_refused(tmp_path, data, message):
    bundle = tmp_path / "bundle.tar.gz"
    bundle.write_bytes(data)

    with pytest.raises(RejectedInputError) as refused:
        unpack_bundle(bundle, tmp_path / "out", LIMITS)

    assert message in refused.value.problems[0].message


def test_a_bundle_without_a_manifest_at_its_top_is_refused(tmp_path):
    bundle = write(tmp_path, files({"a/candidate.yaml": b"x", "b/readme": b"y"}))

    with pytest.raises(RejectedInputError) as refused:
        unpack_bundle(bundle, tmp_path / "out", LIMITS)

    assert refused.value.problems[0].field == "candidate.yaml"


def test_an_uncompressed_tar_is_read_too(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in candidate_files().items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(buffer.getvalue())

    assert (unpack_bundle(bundle, tmp_path / "out", LIMITS) / "candidate.yaml").is_file()

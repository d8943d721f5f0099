"""Stored matrices: the text as sent, validated by the gate's own parser, one per distinct text."""

import hashlib

import pytest

from orchestrator.store import MatrixStore, RejectedInputError, open_database

pytestmark = pytest.mark.unit

YAML = "# kernels\nname: kernels\nimages: [debian12-kernel-n]\n"


@pytest.fixture
def matrices(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'testbed.db'}")
    yield MatrixStore(database)
    database.close()


def test_the_text_is_kept_as_sent_under_its_sha256(matrices):
    record, created = matrices.add(YAML, created_by="qa")
    again, created_again = matrices.add(YAML)

    assert (created, created_again) == (True, False)
    assert record == again
    assert record.matrix_id == hashlib.sha256(YAML.encode()).hexdigest()
    assert (record.name, record.text, record.created_by) == ("kernels", YAML, "qa")
    assert matrices.spec_of(record).timeouts.ready == 300.0
    assert matrices.get(record.matrix_id) == record


def test_json_is_read_as_json(matrices):
    record, _ = matrices.add('{\n\t"name": "as-json",\n\t"images": ["debian12-kernel-n"]\n}')

    assert matrices.spec_of(record).name == "as-json"


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("name: X\nimages: []\n", [("matrix", "name"), ("matrix", "images")]),
        ('{"name": "ok", "images": ["a"], "timeouts": {"ready": 1e999}}', [("matrix", "timeouts.ready")]),
        ("[1, 2]", [("matrix", "")]),
        ("name: [\n", [("matrix", "")]),
    ],
)
def test_a_bad_matrix_is_refused_naming_each_field_and_nothing_is_stored(matrices, text, fields):
    with pytest.raises(RejectedInputError) as refused:
        matrices.add(text)

    assert [(p.location, p.field) for p in refused.value.problems] == fields
    assert matrices.list_matrices() == ([], 0)


def test_listing_by_name_pages_newest_first(matrices):
    for index in range(3):
        matrices.add(YAML + f"# revision {index}\n")
    matrices.add(YAML.replace("kernels", "other"))

    page, total = matrices.list_matrices(name="kernels", limit=2, offset=1)

    assert total == 3
    assert [r.text.splitlines()[-1] for r in page] == ["# revision 1", "# revision 0"]

"""Which files of a run directory are evidence, and finding one by name without ever leaving it:
plain names only, no '..', no hidden files, no links, never the scratch directory."""

import pytest

from api.evidence_files import (
    cell_files,
    content_type_of,
    find_cell_file,
    find_run_file,
    is_safe_name,
    run_files,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as the engine leaves it, plus a few things that must never be served."""
    root = tmp_path / "runs" / "20260101-000000-abcd"
    files = {
        "run.json": "{}",
        "events.jsonl": "{}\n",
        ".lock": "",
        "work/id_ed25519": "PRIVATE KEY",
        "attestations/verdict.dsse.json": "{}",
        "cells/n/console.log": "boot\n",
        "cells/n/cell.json": "{}",
        "cells/n/.hidden": "x",
        "cells/n/attempt-2/console.log": "again\n",
        "cells/n/attempt-2/screen-1.png": "\x89PNG",
        "cells/m/console.log": "other\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "cells" / "n" / "shadow").symlink_to("/etc/shadow")
    (root / "cells" / "n" / "up").symlink_to(root / "work", target_is_directory=True)
    return root


def test_a_cell_lists_its_regular_files_retries_included_nothing_hidden_or_linked(run_dir):
    listed = {(e.name, e.content_type) for e in cell_files(run_dir, "n")}

    assert listed == {
        ("cell.json", "application/json"),
        ("console.log", "text/plain; charset=utf-8"),
        ("attempt-2/console.log", "text/plain; charset=utf-8"),
        ("attempt-2/screen-1.png", "image/png"),
    }


def test_the_run_lists_its_own_files_and_attestations_never_the_scratch(run_dir):
    assert [e.name for e in run_files(run_dir)] == [
        "run.json",
        "events.jsonl",
        "attestations/verdict.dsse.json",
    ]


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("console.log", "cells/n/console.log"),
        ("attempt-2/console.log", "cells/n/attempt-2/console.log"),
        ("../m/console.log", None),
        ("../../work/id_ed25519", None),
        ("/etc/passwd", None),
        ("shadow", None),
        ("up/id_ed25519", None),
        (".hidden", None),
        ("attempt-2/../console.log", None),
        ("attempt-2", None),
        ("missing.log", None),
        ("", None),
        ("a/b/c/d/e", None),
        ("console.log\x00.png", None),
    ],
)
def test_a_cell_file_is_found_by_plain_name_only(run_dir, name, found):
    path = find_cell_file(run_dir, "n", name)

    assert path == (run_dir / found if found else None)


@pytest.mark.parametrize("cell_id", ["..", "../n", ".lock", "n/..", ""])
def test_a_cell_id_that_is_not_a_plain_name_finds_nothing(run_dir, cell_id):
    assert find_cell_file(run_dir, cell_id, "console.log") is None
    assert cell_files(run_dir, cell_id) == []


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("run.json", "run.json"),
        ("events.jsonl", "events.jsonl"),
        ("attestations/verdict.dsse.json", "attestations/verdict.dsse.json"),
        (".lock", None),
        ("work/id_ed25519", None),
        ("cells/n/console.log", None),
        ("attestations/../run.json", None),
        ("attestations/x/../../work/id_ed25519", None),
    ],
)
def test_run_files_are_the_listed_ones_only(run_dir, name, found):
    assert find_run_file(run_dir, name) == (run_dir / found if found else None)


def test_a_linked_cells_directory_is_not_followed(run_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "x").mkdir(parents=True)
    (elsewhere / "x" / "console.log").write_text("not ours\n")
    (run_dir / "cells" / "x").symlink_to(elsewhere / "x", target_is_directory=True)

    assert cell_files(run_dir, "x") == []
    assert find_cell_file(run_dir, "x", "console.log") is None


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("console.log", True),
        ("attempt-2/console.log", True),
        ("a+b@1~c.txt", True),
        ("..", False),
        ("a//b", False),
    ],
)
def test_safe_names(name, safe):
    assert is_safe_name(name) is safe


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("console.log", "text/plain; charset=utf-8"),
        ("probes.jsonl", "application/x-ndjson"),
        ("domain.xml", "application/xml"),
        ("MEMORY.DMP", "application/octet-stream"),
        ("page.html", "application/octet-stream"),
        ("noext", "application/octet-stream"),
    ],
)
def test_content_types_never_let_a_guest_file_render_as_a_page(name, content_type):
    assert content_type_of(name) == content_type

"""The core's validators report problems as text or as pydantic errors; the API needs them as fields."""

import pytest
from pydantic import BaseModel, ValidationError

from orchestrator.errors import ConfigurationError
from orchestrator.store import FieldProblem, RejectedInputError, problems_from

pytestmark = pytest.mark.unit


class Shape(BaseModel):
    size: int
    colour: str


def test_pydantic_errors_are_taken_as_data():
    try:
        Shape.model_validate({"size": "big"})
    except ValidationError as exc:
        error = ConfigurationError("shape: invalid:\n  size: ...")
        error.__cause__ = exc

    assert problems_from(error, "body") == [
        FieldProblem("body", "size", "Input should be a valid integer, unable to parse string as an integer"),
        FieldProblem("body", "colour", "Field required"),
    ]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "candidate: /x/candidate.yaml:\n"
            "  artifacts[0].sha256: has sha256 1, pins 2\n"
            "  artifacts[1].path: gone",
            [("artifacts[0].sha256", "has sha256 1, pins 2"), ("artifacts[1].path", "gone")],
        ),
        (
            'matrix: not valid YAML: while parsing\n  in "<unicode string>", line 1, column 7:\n    name: [x',
            [
                (
                    "",
                    "matrix: not valid YAML: while parsing\n"
                    '  in "<unicode string>", line 1, column 7:\n'
                    "    name: [x",
                )
            ],
        ),
        (
            "matrix: expected a mapping at the top level, got list",
            [("", "matrix: expected a mapping at the top level, got list")],
        ),
    ],
)
def test_listed_problems_are_read_back_only_after_a_title_that_announces_them(message, expected):
    assert [
        (p.field, p.message) for p in problems_from(ConfigurationError(message), "candidate.yaml")
    ] == expected


def test_rejected_input_keeps_its_problems_and_reads_well_as_text():
    rejected = RejectedInputError("the bundle was refused", [FieldProblem("bundle", "/etc/x", "absolute")])

    assert problems_from(rejected, "ignored") == [FieldProblem("bundle", "/etc/x", "absolute")]
    assert str(rejected) == "the bundle was refused\n  bundle./etc/x: absolute"
    assert isinstance(rejected, ConfigurationError)

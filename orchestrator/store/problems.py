"""Rejected input, with every problem named by its field: what the API turns into a 4xx body.

``RejectedInputError`` is a ``ConfigurationError`` (the user's input is wrong; nothing was stored), so
the CLI reports it as bad input (exit 3) like any other. The API reads its ``problems``.
"""

import re
from collections.abc import Sequence

from pydantic import ValidationError

from orchestrator.errors import ConfigurationError
from orchestrator.store.records import FieldProblem

# ``describe_validation_error`` and ``load_candidate`` write one "  field: message" line per problem.
_PROBLEM_LINE = re.compile(r"^\s+(?P<field>[^\s:][^:]*?): (?P<message>.+)$")


class RejectedInputError(ConfigurationError):
    """The input was refused; ``problems`` names each offending field or archive member."""

    def __init__(self, title: str, problems: Sequence[FieldProblem]) -> None:
        self.title = title
        self.problems = tuple(problems)
        lines = [f"  {p.location}{'.' + p.field if p.field else ''}: {p.message}" for p in self.problems]
        super().__init__("\n".join([title, *lines]))


class TooLargeError(RejectedInputError):
    """The input is bigger than the configured limit (HTTP 413)."""


def problems_from_validation(exc: ValidationError, location: str) -> list[FieldProblem]:
    return [
        FieldProblem(location, ".".join(str(part) for part in error["loc"]), error["msg"])
        for error in exc.errors()
    ]


def problems_from(exc: ConfigurationError, location: str) -> list[FieldProblem]:
    """The field-level problems inside a ConfigurationError raised by the core's validators.

    Pydantic's own errors are taken as data (the error's cause); the other validators write a
    title ending in ":" and one indented "field: message" line per problem, which are read back;
    anything else is one problem about the whole input.
    """
    if isinstance(exc, RejectedInputError):
        return list(exc.problems)
    if isinstance(exc.__cause__, ValidationError):
        return problems_from_validation(exc.__cause__, location)
    lines = str(exc).splitlines()
    # Only a title ending in ":" announces a list of problems (other messages, e.g. YAML's syntax
    # errors, have indented lines of their own).
    listed = len(lines) > 1 and lines[0].rstrip().endswith(":")
    found = [match for line in lines[1:] if (match := _PROBLEM_LINE.match(line))] if listed else []
    if found:
        return [FieldProblem(location, match["field"], match["message"]) for match in found]
    return [FieldProblem(location, "", str(exc))]

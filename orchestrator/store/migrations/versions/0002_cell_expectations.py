"""Cells keep what the guest did and what a control image declared, so the page and the counts
show a control image that did as declared as the pass the verdict counts it as.

Finished runs already stored get both from their result (``runs.result``), which has kept them
since the first schema: nothing to re-run, nothing lost.

Revision ID: 0002_cell_expectations
Revises: 0001_initial
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002_cell_expectations"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_runs = sa.table("runs", sa.column("id", sa.String), sa.column("result", sa.JSON))
_cells = sa.table(
    "cells",
    sa.column("run_id", sa.String),
    sa.column("cell_id", sa.String),
    sa.column("observed", sa.String),
    sa.column("expected_outcome", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("observed", sa.String(32), nullable=True))
        batch.add_column(sa.Column("expected_outcome", sa.String(32), nullable=True))
    connection = op.get_bind()
    for run_id, result in connection.execute(sa.select(_runs.c.id, _runs.c.result)):
        for cell_id, values in _expectations(result).items():
            connection.execute(
                _cells.update()
                .where(_cells.c.run_id == run_id, _cells.c.cell_id == cell_id)
                .values(**values)
            )


def _expectations(result: Any) -> dict[str, dict[str, str | None]]:
    """Cell id -> its observed and expected outcome, for the cells of a stored result that had any."""
    cells = result.get("cells") if isinstance(result, dict) else None
    found: dict[str, dict[str, str | None]] = {}
    for cell in cells if isinstance(cells, list) else []:
        if isinstance(cell, dict) and isinstance(cell.get("cell_id"), str):
            values = {key: cell.get(key) for key in ("observed", "expected_outcome")}
            if any(isinstance(value, str) for value in values.values()):
                found[cell["cell_id"]] = {k: v if isinstance(v, str) else None for k, v in values.items()}
    return found


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("expected_outcome")
        batch.drop_column("observed")

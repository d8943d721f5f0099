"""The run store: runs, cells, events, candidates, matrices and API tokens in SQL.

SQLite (WAL) at ``<state_dir>/testbed.db`` by default, PostgreSQL via ``TESTBED_DATABASE_URL``;
the schema is migrated by Alembic at start-up (``open_database``). Every store opens a session per
call and hands out frozen records, never ORM rows, so the engine's threads may share one.
"""

from orchestrator.store.bundles import BundleLimits, check_members, member_problem, unpack_bundle
from orchestrator.store.candidates import CandidateStore, candidate_id_of
from orchestrator.store.database import Database, database_url, open_database, upgrade
from orchestrator.store.matrices import MatrixStore, matrix_id_of
from orchestrator.store.problems import RejectedInputError, TooLargeError, problems_from
from orchestrator.store.records import (
    ArtifactRecord,
    CandidateRecord,
    CellRecord,
    FieldProblem,
    MatrixRecord,
    PhaseTimingRecord,
    Role,
    RunRecord,
    RunStatus,
    TokenRecord,
)
from orchestrator.store.runs import SqlRunStore
from orchestrator.store.tokens import TokenStore

__all__ = [
    "ArtifactRecord",
    "BundleLimits",
    "CandidateRecord",
    "CandidateStore",
    "CellRecord",
    "Database",
    "FieldProblem",
    "MatrixRecord",
    "MatrixStore",
    "PhaseTimingRecord",
    "RejectedInputError",
    "Role",
    "RunRecord",
    "RunStatus",
    "SqlRunStore",
    "TokenRecord",
    "TokenStore",
    "TooLargeError",
    "candidate_id_of",
    "check_members",
    "database_url",
    "matrix_id_of",
    "member_problem",
    "open_database",
    "problems_from",
    "unpack_bundle",
    "upgrade",
]

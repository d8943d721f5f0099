"""Shared test configuration: the repository root and where images are defined."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_DEFINITION_DIRS = [REPO_ROOT / "images" / "linux", REPO_ROOT / "images" / "controls"]

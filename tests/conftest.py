"""Shared test configuration: the repository root and where images are defined."""

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

# In CI property tests explore the same examples every time: a failure there is reproducible, and a
# developer's runs (random) keep finding new ones.
settings.register_profile("ci", derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_DEFINITION_DIRS = [REPO_ROOT / "images" / "linux", REPO_ROOT / "images" / "controls"]

"""The code stays as `make lint` wants it (ruff: B, E, F, I, UP, W, and its formatter)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.procs import PYTHON, ROOT

PACKAGES = ["core", "api", "worker", "training", "cli", "bench", "tests"]


def test_ruff_check_and_format():
    ruff = str(Path(PYTHON).parent / "ruff")
    check = subprocess.run([ruff, "check", *PACKAGES], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [ruff, "format", "--check", *PACKAGES], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout

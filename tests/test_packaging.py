"""`pip install <repo>` gives a library whose embedded models load from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_package_loads_the_default_model_outside_the_repo(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(REPO)], check=True, cwd=tmp_path)
    script = ("import core, core.training.dualstylegan.phases; from core import load_generator; "
              "from core.registry import resolve; "
              "g = load_generator('default'); print(core.__file__, g.size, resolve('face128-v2-e4e'))")
    out = subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout
    assert out.startswith(str(target)) and " 128 " in out and str(target) in out.split()[-1], out

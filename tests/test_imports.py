"""Each package imports alone in a fresh interpreter (no circular imports, no hidden order)."""

import subprocess
import sys

import pytest

PACKAGES = [
    "pruned_yolo",
    "pruned_yolo.models",
    "pruned_yolo.checkpoint",
    "pruned_yolo.data.config",
    "pruned_yolo.inference",
    "pruned_yolo.evaluation.validator",
    "pruned_yolo.cli.main",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_imports_alone(name):
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True)

"""The wheel ships adapters/ as jal_plugins.adapters, and registry.toml and the review page's template
inside the package."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_layout(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("jal_plugins-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("adapters/__init__", "adapters/hf_datasets", "datasets/cifar", "methods/prune", "bench"):
        assert f"jal_plugins/{module}.py" in names
    assert "jal_plugins/registry.toml" in names and "jal_plugins/review.html" in names
    assert not any(n.startswith("adapters/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[jal_plugins]" in text and "jal_plugins.builtins" in text
    assert "jal-plugins = jal_plugins.cli:main" in text

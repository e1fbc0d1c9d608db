"""clients/python installs on its own (its own pyproject, only httpx) and never imports the server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "python"

CHECK = """
import sys, omnivec_client
from omnivec_client import Client, AsyncClient, Item
assert omnivec_client.__file__.startswith(sys.argv[1]), omnivec_client.__file__
heavy = sorted(m for m in ("omnivec", "numpy", "torch", "onnxruntime", "fastapi") if m in sys.modules)
assert not heavy, heavy
print("ok")
"""


def test_the_sdk_installs_alone_and_imports_only_httpx(tmp_path):
    source, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))  # builds leave files behind
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(source)]
    subprocess.run(pip, check=True, timeout=300, capture_output=True)
    assert (target / "omnivec_client" / "py.typed").is_file()
    run = subprocess.run(
        [sys.executable, "-c", CHECK, str(target)], env={"PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr

"""The `omnivec` command: help that explains, export and embed from the shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.media import encode, scene


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omnivec", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_subcommand():
    out = _run("--help").stdout
    for word in ("export", "serve", "embed", "examples:"):
        assert word in out
    for sub in ("export", "serve", "embed"):
        proc = _run(sub, "--help")
        assert proc.returncode == 0 and ("--bundle" in proc.stdout or "--model" in proc.stdout)


def test_export_then_embed(tmp_path, tiny_bundle):
    out = tmp_path / "cli-bundle"
    proc = _run("export", "--model", "omnivec-tiny", "--pretrained", "none", "--out", str(out), "--towers", "text")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["parity"]["text"]["fp32"]["cos_min"] >= 0.99999  # per-precision report since the int8 export
    assert "export" in proc.stderr, "progress is shown on stderr"

    image = tmp_path / "scene.png"
    image.write_bytes(encode(scene(), "PNG"))
    proc = _run("embed", "--bundle", str(tiny_bundle), "--text", "a red disk", "--image", str(image))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["modality"] for r in rows] == ["text", "image"]
    assert all(abs(np.linalg.norm(r["embedding"]) - 1) < 1e-4 for r in rows)


def test_embed_reports_bad_image(tmp_path, tiny_bundle):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    proc = _run("embed", "--bundle", str(tiny_bundle), "--image", str(bad))
    assert proc.returncode == 2 and "bad.jpg" in proc.stderr


def test_serve_without_bundle_builds_the_default_model_or_names_the_fix(tmp_path):
    """No --bundle: omnivec-mini is built first; without espeak-ng that fails fast, naming the install
    command and the --bundle alternative (the full build is covered by tests/test_readme.py)."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "OMNIVEC_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run([sys.executable, "-m", "omnivec", "serve", "--port", "0"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "building the default model omnivec-mini" in proc.stderr
    assert "apt-get install espeak-ng" in proc.stderr and "--bundle" in proc.stderr
    assert not (tmp_path / "data" / "omnivec-mini" / "bundle").exists()

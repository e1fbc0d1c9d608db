"""bench/gpu_check.py, run on the CPU provider (no GPU here): the same command a GPU machine runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def _run(bundle, out, *extra):
    cmd = [sys.executable, str(SCRIPT), str(bundle), str(out), "--provider", "CPUExecutionProvider", "--batches", "1,4", "--seconds", "0.05", "--threads", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_gpu_check_on_the_cpu_provider(tiny_int8_bundle, tmp_path):
    proc = _run(tiny_int8_bundle, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    assert report["provider"] == "CPUExecutionProvider" and set(report["towers"]) == {"image", "text"}
    for tower in report["towers"].values():
        assert tower["fp32"]["probe"]["passed"] and tower["fp32"]["probe"]["cos_min"] >= 0.99999
        assert tower["fp32"]["vs_cpu_cos_min"] >= 0.99999
        assert tower["fp16"]["probe"]["passed"] and tower["fp16"]["probe"]["threshold"] == 0.999
        assert 0.999 <= tower["fp16"]["vs_cpu_cos_min"] < 1.0, "fp16 really changes the arithmetic"
        assert tower["cpu_int8_probe"]["passed"]
        assert set(tower["fp32"]["items_s"]) == {"b1", "b4"} and all(v > 0 for v in tower["fp32"]["items_s"].values())


def test_gpu_check_names_the_fix_for_a_bundle_without_probes(tiny_bundle, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(tiny_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("probes")
    (old / "manifest.json").write_text(json.dumps(manifest))
    proc = _run(old, tmp_path / "out")
    assert proc.returncode != 0 and "re-export it with `omnivec export`" in proc.stderr

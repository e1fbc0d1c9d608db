"""`omnivec finetune` from the shell: YAML + flags, one process and two processes under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from omnivec.server_process import free_port


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from omnivec.finetune.corpora.shapes import generate

    return generate(tmp_path_factory.mktemp("shapes"), per_combo=6, colors=["red", "blue"], shapes=["circle", "square"])


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_finetune_command_with_yaml_and_flags(corpus, tmp_path):
    config = tmp_path / "ft.yaml"
    config.write_text(f"train_data: {corpus}\nepochs: 5\nbatch_size: 8\nval_fraction: 0.25\nthreads: 1\n")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "omnivec", "finetune", "--config", str(config), "--epochs", "2", "--out", str(out), "--tile-size", "3", "--chunk-size", "4"],
        capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["bundle"] == str(out / "bundle") and summary["steps"] == 2 * (18 // 8)
    report = json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [0, 1, 2] and report["config"]["epochs"] == 2
    assert "epoch 1/2" in proc.stderr, "progress is shown"


def test_finetune_command_explains_bad_config(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "omnivec", "finetune", "--epochs", "2"], capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 2 and "train_data" in proc.stderr


def test_two_processes_with_torchrun(corpus, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()), "-m", "omnivec", "finetune",
        "--train-data", str(corpus), "--epochs", "2", "--batch-size", "8", "--val-fraction", "0.25", "--threads", "1",
        "--out", str(out), "--tile-size", "3", "--no-export",
    ]
    # own process group: a hung rank must not outlive the test
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, "only rank 0 reports"
    summary = json.loads(lines[0])
    assert summary["steps"] == 2 * (18 // 8), "each step takes one global batch split over both ranks"
    report = json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [0, 1, 2]


def test_finetune_publishes_its_bundle_and_reembeds_a_collection(corpus, tiny_bundle, tmp_path):
    """--publish loads the exported bundle into a running server and --publish-reembed moves a collection into its space."""
    import httpx

    from omnivec.server_process import ServerProcess

    with ServerProcess(tiny_bundle, log=tmp_path / "server.log", env={"OMNIVEC_DATA_DIR": str(tmp_path / "data")}) as server:
        url = server.url
        assert httpx.post(f"{url}/v1/collections", json={"name": "shapes"}, timeout=30).status_code == 201
        items = [{"id": f"s{i}", "text": f"a {c} {s}"} for i, (c, s) in enumerate((c, s) for c in ("red", "blue") for s in ("circle", "square", "star"))]
        assert httpx.post(f"{url}/v1/collections/shapes/items", json={"items": items}, timeout=60).json()["indexed"] == 6
        out = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "omnivec", "finetune", "--train-data", str(corpus), "--epochs", "1", "--max-steps", "1", "--batch-size", "8",
             "--threads", "1", "--out", str(out), "--publish", url, "--publish-name", "tiny-ft", "--publish-reembed", "shapes"],
            capture_output=True, text=True, timeout=600, env=_env(),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        published = json.loads(proc.stdout.strip().splitlines()[-1])["published"]
        assert published["model"] == "tiny-ft" and published["reembedded"] == {"shapes": {"total": 6, "errors": 0, "previous": "shapes.r0"}}
        assert "re-embedding shapes: 6/6" in proc.stderr, "progress is shown"
        models = {m["name"]: m for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}
        assert set(models) == {"omnivec-tiny", "tiny-ft"} and models["tiny-ft"]["bundle"] == str((out / "bundle").resolve())
        shapes = httpx.get(f"{url}/v1/collections/shapes", timeout=10).json()
        assert shapes["space_id"] == models["tiny-ft"]["space_id"] == published["space_id"] and shapes["count"] == 6

"""The README's quick start, run as written: the serve command bootstraps omnivec-mini and serves
it with the demo collection, the three curl examples, the SDK and the OpenAI examples answer
sensibly, and the page and the demo's kept pictures and sounds are served."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from omnivec.server_process import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("curl") is None, reason="needs espeak-ng and curl"),
]


def readme_block(name: str, language: str = "bash") -> str:
    """The fenced block right after `<!-- readme-test: NAME -->`."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- readme-test: {name} -->\s*```{language}\n(.*?)```", text, re.S)
    assert match, f"README has no block marked readme-test: {name}"
    return match.group(1)


def commands(block: str) -> list[str]:
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def test_readme_names_the_test_command_ci_runs():
    assert commands(readme_block("tests")) == [(ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]]


def test_readme_speaks_in_a_voice_the_default_model_never_heard():
    """The README says its spoken "seven" is in a voice training never used; hold it to that."""
    from omnivec.finetune.bootstrap_data import training_voices

    voices = re.findall(r"espeak-ng -v (\S+)", readme_block("try"))
    assert voices and not {v.lower() for v in voices} & {v.lower() for v in training_voices(0)}, voices


@pytest.mark.timeout(2700)  # the install plus a full default build (~10 min on 2 quiet cores), with room for a busy one
def test_readme_quick_start(tmp_path):
    [serve] = commands(readme_block("serve"))
    port, data = free_port(), tmp_path / "data"
    env = {**os.environ, "OMNIVEC_DATA_DIR": str(data), "OMNIVEC_SERVER__PORT": str(port), "OMNIVEC_MODEL__INTRA_OP_THREADS": "1"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-c", serve], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 2400
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            pytest.fail("the README's serve command did not become ready:\n" + log.read_text()[-3000:])
        assert "building the default model omnivec-mini" in log.read_text()

        answers = []
        for command in commands(readme_block("try")):
            command = command.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("@data/", f"@{data}/")
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (command, done.stderr)
            answers.append(json.loads(done.stdout))
        by_text, by_image, spoken = answers
        assert "red heart" in [h["payload"]["label"] for h in by_text["results"]], by_text
        assert all(h["payload"]["label"].endswith("heart") for h in by_text["results"]), by_text
        first = by_image["results"][0]
        assert first["payload"]["label"] == "blue star" and first["score"] > 0.999, by_image  # the picture itself
        assert all(h["payload"]["label"].startswith("blue ") for h in by_image["results"]), by_image
        assert spoken["results"][0]["labels"][0]["label"] == "seven", spoken

        sdk = readme_block("sdk", "python").replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace('"data/', f'"{data}/')
        for run in (1, 2):
            done = subprocess.run([sys.executable, "-c", sdk], cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            lines = done.stdout.splitlines()
            top3 = [line.split(maxsplit=1)[1] for line in lines[:3]]
            assert top3[0] == "purple triangle" and all(t.startswith("purple ") for t in top3) and top3.count("purple triangle") >= 2, lines
            assert lines[3].startswith("LabelScore(label='a blue star'"), lines
            assert lines[4] == ("indexed 2, skipped 0 (already there), errors []" if run == 1 else "indexed 0, skipped 2 (already there), errors []")
            assert "'note': 'my star'" in lines[5], lines

        # The OpenAI block, with the picture the README makes earlier.
        red = tmp_path / "red.png"
        Image.new("RGB", (64, 48), "red").save(red)
        openai_block = readme_block("openai", "python").replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("/tmp/red.png", str(red))
        done = subprocess.run([sys.executable, "-c", openai_block], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        count, tokens = done.stdout.splitlines()[0].split()
        assert count == "2" and int(tokens) > 4, done.stdout
        assert done.stdout.splitlines()[1] == "[128, 128]", done.stdout

        # The page and the demo's kept media: pictures come back as thumbnails, sounds as previews.
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for modality, content_type in (("image", "image/webp"), ("audio", "audio/ogg")):
            hits = httpx.post(f"{url}/v1/collections/demo/search", json={"query": {"text": "a red heart"}, "top_k": 2, "modality": modality}).json()
            for hit in hits["results"]:
                kept = httpx.get(f"{url}/v1/collections/demo/media/{quote(hit['id'], safe='/')}", timeout=10)
                assert kept.status_code == 200 and kept.headers["content-type"] == content_type, (hit, kept.text[:300])
                assert 0 < len(kept.content) <= (48 if modality == "image" else 128) * 1024
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)

"""The startup demo collection (Settings.demo_items) on tiny bundles: indexed before /readyz says
ready, a bad file is skipped without losing the rest, a restart does not index again, and a
different model's server rebuilds it in its own space."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from omnivec.server_process import ServerProcess
from tests.media import encode, encode_audio, scene, tone


@pytest.fixture()
def demo_items(tmp_path) -> Path:
    media = tmp_path / "demo" / "media"
    media.mkdir(parents=True)
    rows = []
    for k in range(5):
        (media / f"scene{k}.png").write_bytes(encode(scene(seed=k), "PNG"))
        rows.append({"path": f"media/scene{k}.png", "payload": {"label": f"scene {k}"}})
    (media / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append({"path": "media/broken.png", "payload": {"label": "broken"}})
    (media / "tone.wav").write_bytes(encode_audio(tone(440.0, 1.2, 16000), 16000))
    rows.append({"path": "media/tone.wav", "payload": {"label": "a tone"}})
    items = tmp_path / "demo" / "items.jsonl"
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return items


def test_demo_indexed_at_startup_resumed_not_repeated_and_rebuilt_for_another_model(tiny_bundle, tiny_audio_bundle, demo_items, tmp_path):
    env = {"OMNIVEC_DEMO_ITEMS": str(demo_items), "OMNIVEC_DATA_DIR": str(tmp_path / "data")}
    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "first.log") as server:  # image + text towers only
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["status"] == "ready" and ready["demo"] == "5 items in collection 'demo'"
        labels = {h["payload"]["label"] for h in httpx.post(f"{server.url}/v1/collections/demo/search", json={"query": {"text": "a scene"}, "top_k": 10}).json()["results"]}
        assert labels == {f"scene {k}" for k in range(5)}
    log = (tmp_path / "first.log").read_text()
    assert "broken.png not indexed" in log and "tone.wav not indexed" in log  # named, and the rest kept

    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "second.log") as server:
        assert httpx.get(f"{server.url}/v1/collections/demo").json()["count"] == 5
    assert "indexing 2 of 7 items" in (tmp_path / "second.log").read_text()  # only the two that failed are retried

    with ServerProcess(tiny_audio_bundle, env=env, log=tmp_path / "third.log") as server:  # another space, with audio
        info = httpx.get(f"{server.url}/v1/collections/demo").json()
        assert info["matches_model"] and info["count"] == 6
    assert "rebuilding it" in (tmp_path / "third.log").read_text()


def test_demo_items_file_errors_do_not_stop_the_server(tiny_bundle, tmp_path):
    bad = tmp_path / "items.jsonl"
    bad.write_text('{"payload": {}}\n')
    env = {"OMNIVEC_DEMO_ITEMS": str(bad), "OMNIVEC_DATA_DIR": str(tmp_path / "data")}
    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "server.log") as server:
        assert httpx.get(f"{server.url}/readyz").json()["demo"] == "failed (see the server log)"
        assert httpx.post(f"{server.url}/v1/embed", json={"texts": ["still serving"]}).status_code == 200
    assert "items.jsonl:1" in (tmp_path / "server.log").read_text()
